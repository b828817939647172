"""``appliance tco``: what the in-house cluster costs against the configured external
providers, per million tokens and for a measured month (docs/tco.md)."""

from __future__ import annotations

import enum
import getpass
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import inspect

from appliance.audit.access import Actor, record_act
from appliance.audit.records import AuditEvent
from appliance.audit.wiring import open_audit_log
from appliance.cli.common import ConfigOption, console, settings_from
from appliance.config import Settings
from appliance.db import create_db_engine
from appliance.errors import ConfigurationError
from appliance.planner import plan_from_dict
from appliance.tco import (
    Hardware,
    Usage,
    compare,
    configured_hardware,
    missing_inputs,
    month_bounds,
    month_usage,
    render_json,
    render_table,
    throughput_of,
)

__all__ = ["Format", "tco"]


class Format(enum.StrEnum):
    table = "table"
    json = "json"


def _hardware(settings: Settings, plan_file: Path | None) -> Hardware:
    if plan_file is None:
        return configured_hardware(settings.tco)
    try:
        data = json.loads(plan_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"--plan {plan_file}: not a readable plan ({exc})") from exc
    plan = plan_from_dict(data)
    return Hardware(
        nodes=plan.nodes,
        gpus_per_node=plan.gpus_per_node,
        source=f"plan {plan_file.name}: {plan.display_name} on {plan.gpu_name}",
    )


def _usage(settings: Settings, month: str) -> Usage:
    """The month's tokens from the audit log; the read is itself recorded."""
    engine = create_db_engine(settings.database_url)
    try:
        if not inspect(engine).has_table("audit_log"):
            raise ConfigurationError(
                "no audit log in the database (appliance db upgrade), or use --no-usage"
            )
        log = open_audit_log(settings, engine)
        user = getpass.getuser()
        actor = Actor(subject=f"cli:{user}", username=user, auth_method="cli")
        record_act(log, actor, AuditEvent.AUDIT_SEARCH, {"tco_month": month}, path="tco")
        return month_usage(engine, month)
    finally:
        engine.dispose()


def tco(
    config: ConfigOption = None,
    output_format: Annotated[Format, typer.Option("--format", "-f")] = Format.table,
    plan_file: Annotated[
        Path | None,
        typer.Option("--plan", help="A plan (appliance plan -f json): nodes and GPUs from it"),
    ] = None,
    month: Annotated[
        str | None,
        typer.Option("--month", help="Month of measured usage, YYYY-MM (default: this month)"),
    ] = None,
    no_usage: Annotated[
        bool, typer.Option("--no-usage", help="Leave the audit log out (prices only)")
    ] = False,
) -> None:
    """Cost of the in-house cluster per 1M input and output tokens against each external
    provider's prices, and a measured month (audit log): in-house X, external Y."""
    settings = settings_from(config)
    if month is not None:
        try:
            month_bounds(month)
        except ValueError as exc:
            raise ConfigurationError(f"--month: expected YYYY-MM, got {month!r}") from exc
    missing = missing_inputs(settings.tco, hardware_known=plan_file is not None)
    if missing:
        raise ConfigurationError(
            "appliance tco needs, in appliance.yaml: " + ", ".join(missing) + " (docs/tco.md)"
        )
    hardware = _hardware(settings, plan_file)
    throughput = throughput_of(settings.tco)
    usage = None
    if not no_usage:
        usage = _usage(settings, month or datetime.now(UTC).strftime("%Y-%m"))
    report = compare(
        settings.tco, hardware, settings.external_providers, throughput=throughput, usage=usage
    )
    if output_format is Format.json:
        typer.echo(render_json(report), nl=False)
    else:
        console.print(render_table(report))
