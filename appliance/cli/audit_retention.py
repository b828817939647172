"""``appliance audit retention plan|apply``: what content falls due when, and dropping
it. Thin: parse, call appliance.audit.retention_store, print."""

from __future__ import annotations

import getpass
import json
from typing import Annotated

import typer
from rich.table import Table

from appliance.audit.access import Actor, record_act
from appliance.audit.records import AuditEvent
from appliance.audit.retention import RetentionPolicy, enforce_floor, schedule_document
from appliance.audit.retention_store import apply_retention, retention_plan
from appliance.audit.wiring import open_audit_log
from appliance.cli.common import ConfigOption, console, settings_from
from appliance.db import create_db_engine

__all__ = ["retention_app"]

retention_app = typer.Typer(
    help="Retention of sealed content per event kind (audit.retention).", no_args_is_help=True
)


def _actor(name: str | None) -> Actor:
    username = name or getpass.getuser()
    return Actor(subject=f"cli:{username}", username=username, auth_method="cli")


ActorOption = Annotated[
    str | None,
    typer.Option("--actor", help="Who acts (recorded); default: the OS user", show_default=False),
]


@retention_app.command("plan")
def plan(
    horizon: Annotated[
        int, typer.Option(min=1, max=3660, help="List due dates this many days ahead")
    ] = 90,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document")] = False,
    actor: ActorOption = None,
    config: ConfigOption = None,
) -> None:
    """Show each event kind's period, its content past it now, and when more falls due.

    "past it now" is what the next `apply` drops. Reads metadata only; the look is
    recorded (audit.search)."""
    settings = settings_from(config)
    policy = RetentionPolicy.from_settings(settings.audit.retention)
    engine = create_db_engine(settings.database_url)
    try:
        log = open_audit_log(settings, engine)
        record_act(
            log, _actor(actor), AuditEvent.AUDIT_SEARCH, {"retention_plan": True},
            path="audit retention plan",
        )  # fmt: skip
        now = log.now()
        kinds = retention_plan(engine, policy, now, horizon_days=horizon)
    finally:
        engine.dispose()
    if as_json:
        document = schedule_document(policy, kinds, now=now, horizon_days=horizon)
        typer.echo(json.dumps(document, indent=2))
        return
    table = Table(title=f"Retention on {now:%Y-%m-%d %H:%M} UTC")
    table.add_column("event", no_wrap=True)
    table.add_column("period", no_wrap=True)
    for heading in ("with content", "past it now"):
        table.add_column(heading, justify="right")
    table.add_column("falls due (day: records)")
    for kind in kinds:
        upcoming = [f"{day:%Y-%m-%d}: {count}" for day, count in kind.upcoming[:3]]
        if len(kind.upcoming) > 3 or kind.later:
            rest = sum(n for _, n in kind.upcoming[3:]) + kind.later
            upcoming.append(
                f"{rest} more after {kind.upcoming[2][0]:%Y-%m-%d}"
                if len(kind.upcoming) > 3
                else f"{rest} beyond {horizon} d"
            )
        period = f"{kind.days} d" + ("" if kind.rule == kind.event else f" ({kind.rule})")
        table.add_row(
            kind.event, period, str(kind.held), str(kind.due_now), ", ".join(upcoming) or "-"
        )
    console.print(table)
    console.print(
        f"default {policy.default_days} d, floor {policy.floor_days} d"
        + (f"; override: {policy.override_reason}" if policy.override_reason else ""),
        highlight=False,
    )


@retention_app.command("apply")
def apply(
    days: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="One period for every kind, this run only (the floor still holds); "
            "default: audit.retention per kind",
            show_default=False,
        ),
    ] = None,
    actor: ActorOption = None,
    config: ConfigOption = None,
) -> None:
    """Drop the sealed content of every record past its kind's retention period.

    Metadata, leaves and proofs stay; `audit verify` stays green and counts the
    dropped contents. The act is recorded first (audit.retention)."""
    settings = settings_from(config)
    policy = RetentionPolicy.from_settings(settings.audit.retention)
    if days is not None:
        policy = policy.uniform(days)
    enforce_floor(policy)
    engine = create_db_engine(settings.database_url)
    try:
        log = open_audit_log(settings, engine)
        dropped = apply_retention(log, policy, actor=_actor(actor))
    finally:
        engine.dispose()
    for event, count in sorted(dropped.items()):
        console.print(
            f"{event}: dropped content of {count} record(s) older than "
            f"{policy.period_for(event)} days",
            highlight=False,
        )
    console.print(f"dropped content of {sum(dropped.values())} record(s)")
