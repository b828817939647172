"""``appliance audit verify|search|show|prove|export|shred|checkpoint|public-key|retention``.

Thin: each command parses, calls appliance.audit, prints. Acts that touch content
(show, export --reveal, shred, retention) are recorded in the log before they happen,
with the operator's name (``--actor``, default: the OS user) and the reason.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from appliance.audit.access import (
    Actor,
    inclusion_proof_for,
    record_act,
    reveal,
    search_details,
    shred_subject,
)
from appliance.audit.checkpoint import NoteVerifier
from appliance.audit.consistency import consistency_proof_for
from appliance.audit.export import export_bundle
from appliance.audit.forward import siem_options
from appliance.audit.log import AuditLog
from appliance.audit.records import AuditEvent, metadata_of
from appliance.audit.store import SearchFilter
from appliance.audit.verify import verify_log
from appliance.audit.wiring import audit_verifier, open_audit_log
from appliance.cli.audit_forward import forward
from appliance.cli.audit_keys import keys_app
from appliance.cli.audit_retention import retention_app
from appliance.cli.audit_spool import print_spool_report, spool_report
from appliance.cli.audit_store import audit_store
from appliance.cli.common import ConfigOption, console, settings_from
from appliance.cli.witness import check_witnesses
from appliance.config import Settings
from appliance.db import create_db_engine
from appliance.errors import InvalidRequest

__all__ = ["app"]

app = typer.Typer(
    help="The tamper-evident audit log: verify, search, reveal, prove, export, erase.",
    no_args_is_help=True,
)
app.add_typer(retention_app, name="retention")
app.add_typer(keys_app, name="keys")
app.command("forward")(forward)  # appliance/cli/audit_forward.py


class ExportFormat(StrEnum):
    BUNDLE = "bundle"
    CEF = "cef"
    OCSF = "ocsf"


ActorOption = Annotated[
    str | None,
    typer.Option("--actor", help="Who acts (recorded); default: the OS user", show_default=False),
]
ReasonOption = Annotated[
    str, typer.Option("--reason", help="Why (recorded with the act), e.g. a case number")
]


def _actor(name: str | None) -> Actor:
    username = name or getpass.getuser()
    return Actor(subject=f"cli:{username}", username=username, auth_method="cli")


@contextmanager
def _log(config: Path | None) -> Iterator[AuditLog]:
    settings = settings_from(config)
    engine = create_db_engine(settings.database_url)
    try:
        yield open_audit_log(settings, engine)
    finally:
        engine.dispose()


def _time(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidRequest(f"{option}: not an ISO date or time: {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _verifier(settings: Settings, key: str | None) -> NoteVerifier:
    if key is None:
        return audit_verifier(settings)
    text = Path(key).read_text(encoding="ascii") if Path(key).is_file() else key
    return NoteVerifier.from_verifier_key(text)


@app.command("verify")
def verify(
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="A checkpoint kept outside the appliance (e.g. by a witness)"),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(help="Verifier key (text or file); default: from the signing key file"),
    ] = None,
    jobs: Annotated[
        int, typer.Option(min=1, max=64, help="Worker processes that re-encode records")
    ] = 2,
    skip_witnesses: Annotated[
        bool,
        typer.Option(
            "--skip-witnesses",
            help="Do not ask the configured witnesses (a rollback then goes unnoticed)",
        ),
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Recompute the tree from the stored records and check every checkpoint, then check
    the log against what each configured witness last cosigned (audit.witnesses).

    Exits non-zero naming the first bad record on any tampering, and naming the witness
    on a rollback or fork."""
    with audit_store(config) as (settings, store):
        verifier = _verifier(settings, key)
        external = checkpoint.read_text(encoding="utf-8") if checkpoint else None
        report = verify_log(
            store, verifier, origin=settings.audit.origin, external=external, jobs=jobs
        )
        witnessed = (
            [] if skip_witnesses else check_witnesses(settings, store, verifier, report.records)
        )
        spooled = spool_report(settings, store)
    console.print(
        f"OK: {report.records} records, {report.checkpoints} checkpoints; latest signed "
        f"checkpoint covers {report.latest_checkpoint}",
        highlight=False,
    )
    if report.uncovered:
        console.print(
            f"{report.uncovered} newer records are not yet covered by a checkpoint "
            "(`appliance audit checkpoint` signs one now)",
            highlight=False,
        )
    if report.external_checkpoint is not None:
        console.print(f"outside checkpoint at size {report.external_checkpoint}: consistent")
    for seen in witnessed:
        console.print(
            f"witness {seen.witness}: last cosigned size {seen.size} "
            f"({datetime.fromtimestamp(seen.timestamp, UTC):%Y-%m-%d %H:%M:%S} UTC): consistent",
            highlight=False,
        )
    if report.contents_dropped:
        console.print(f"{report.contents_dropped} contents dropped by retention (leaves intact)")
    if spooled is not None:
        print_spool_report(spooled)


@app.command("search")
def search(
    user: Annotated[str | None, typer.Option(help="Username")] = None,
    subject: Annotated[str | None, typer.Option(help="Principal subject (sub)")] = None,
    team: Annotated[str | None, typer.Option()] = None,
    model: Annotated[str | None, typer.Option()] = None,
    event: Annotated[str | None, typer.Option(help="e.g. inference.request, audit.read")] = None,
    status: Annotated[str | None, typer.Option(help="Outcome: ok, denied, invalid, ...")] = None,
    since: Annotated[str | None, typer.Option("--from", help="ISO time (UTC if no zone)")] = None,
    until: Annotated[str | None, typer.Option("--to", help="ISO time, exclusive")] = None,
    denials: Annotated[bool, typer.Option("--denials", help="Only refused requests")] = False,
    limit: Annotated[int, typer.Option(min=1, max=100000)] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line")] = False,
    actor: ActorOption = None,
    config: ConfigOption = None,
) -> None:
    """Search record metadata (content stays encrypted; use `show` to read it). The
    search itself is recorded."""
    where = SearchFilter(
        subject=subject, username=user, team=team, model=model, event=event, outcome=status,
        since=_time(since, "--from"), until=_time(until, "--to"), denials_only=denials,
        limit=limit,
    )  # fmt: skip
    with _log(config) as log:
        record_act(
            log, _actor(actor), AuditEvent.AUDIT_SEARCH, search_details(where), path="audit search"
        )
        found = log.store.search(where)
    if as_json:
        for stored in found:
            typer.echo(
                json.dumps({"index": stored.entry.index, **metadata_of(stored.entry.record)})
            )
        return
    table = Table()
    for heading in ("#", "time", "event", "user", "team", "model", "outcome", "record id"):
        table.add_column(heading, no_wrap=heading == "record id")
    for stored in found:
        record = stored.entry.record
        table.add_row(
            str(stored.entry.index),
            record.recorded_at.strftime("%Y-%m-%d %H:%M:%S"),
            str(record.event),
            record.username or "-",
            record.team or "-",
            record.model or "-",
            str(record.outcome),
            record.record_id,
        )
    console.print(table)


@app.command("show")
def show(
    record_id: str, reason: ReasonOption, actor: ActorOption = None, config: ConfigOption = None
) -> None:
    """Decrypt and print one record. The viewer and the reason are recorded first."""
    with _log(config) as log:
        shown = reveal(log, record_id, actor=_actor(actor), reason=reason)
    document: dict[str, Any] = {
        "index": shown.index,
        **metadata_of(shown.record),
        "content_status": shown.status,
        "content": shown.content,
    }
    typer.echo(json.dumps(document, indent=2, ensure_ascii=False))


@app.command("prove")
def prove(
    record_id: Annotated[
        str | None,
        typer.Argument(
            metavar="RECORD_ID", help="The record to prove included", show_default=False
        ),
    ] = None,
    consistency: Annotated[
        tuple[int, int] | None,
        typer.Option(
            "--consistency",
            metavar="N M",
            help="Instead: prove that the log at size M extends the log at size N",
            show_default=False,
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Print a proof (JSON): that a record is included in the latest checkpoint, or with
    --consistency N M that the tree of M records extends the tree of N (RFC 6962),
    with the signed checkpoints at both sizes where they exist."""
    if (record_id is None) == (consistency is None):
        raise InvalidRequest("give a RECORD_ID or --consistency N M (one of the two)")
    with audit_store(config) as (settings, store):
        verifier = audit_verifier(settings)
        if consistency is not None:
            old_size, new_size = consistency
            document = consistency_proof_for(
                store, old_size, new_size, origin=settings.audit.origin, verifier=verifier
            )
        else:
            assert record_id is not None
            document = inclusion_proof_for(
                store, record_id, origin=settings.audit.origin, verifier=verifier
            )
    typer.echo(json.dumps(document, indent=2, ensure_ascii=False))


@app.command("checkpoint")
def checkpoint(config: ConfigOption = None) -> None:
    """Sign a checkpoint for the current log now, and print the latest."""
    with _log(config) as log:
        log.checkpoint()
        latest = log.store.latest_checkpoint()
    if latest is None:
        raise InvalidRequest("the audit log is empty")
    typer.echo(latest.note, nl=False)


@app.command("public-key")
def public_key(config: ConfigOption = None) -> None:
    """Print the verifier key for checkpoints (give it to auditors and witnesses)."""
    typer.echo(audit_verifier(settings_from(config)).verifier_key())


@app.command("export")
def export(
    out: Annotated[Path, typer.Option("--out", help="The bundle to write (.zip)")],
    since: Annotated[
        str | None, typer.Option("--from", "--since", help="ISO time (UTC if no zone)")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--to", "--until", help="ISO time, exclusive")
    ] = None,
    fmt: Annotated[
        ExportFormat,
        typer.Option(
            "--format",
            help="bundle: the signed evidence bundle; cef or ocsf: the bundle plus the "
            "same records' metadata as CEF lines (events.cef) or OCSF JSON lines "
            "(events.ocsf.jsonl) in it",
        ),
    ] = ExportFormat.BUNDLE,
    reveal_content: Annotated[
        bool, typer.Option("--reveal", help="Decrypt content into the bundle (needs --reason)")
    ] = False,
    reason: Annotated[str | None, typer.Option(help="Why (required with --reveal)")] = None,
    egress: Annotated[
        bool,
        typer.Option(
            "--egress",
            help="Only calls to external providers, with what left per team and provider "
            "in egress_summary.json",
        ),
    ] = False,
    actor: ActorOption = None,
    config: ConfigOption = None,
) -> None:
    """Write an evidence bundle that verifies with its own standalone verifier; with
    --format cef|ocsf also the records' metadata for a SIEM or WORM archive; with
    --egress only the external calls and their summary."""
    if reveal_content and not reason:
        raise InvalidRequest("--reveal needs --reason")
    settings = settings_from(config)
    siem = None if fmt is ExportFormat.BUNDLE else (fmt.value, siem_options(settings))
    with _log(config) as log:
        result = export_bundle(
            log, out, since=_time(since, "--from"), until=_time(until, "--to"),
            actor=_actor(actor), reveal_reason=reason if reveal_content else None, siem=siem,
            egress=egress,
        )  # fmt: skip
    console.print(
        f"wrote {result.path}: {result.records} records, proofs against tree size "
        f"{result.tree_size}{' (content revealed)' if result.revealed else ''}"
        f"{f'; metadata as {fmt.value} in {result.siem_file}' if result.siem_file else ''}"
        f"{'; external calls only, summary in egress_summary.json' if egress else ''}",
        highlight=False,
    )


@app.command("shred")
def shred(
    subject: Annotated[str, typer.Option(help="The principal subject (sub) to erase")],
    reason: ReasonOption,
    actor: ActorOption = None,
    config: ConfigOption = None,
) -> None:
    """Crypto-shred a subject: destroy its keys. Content becomes unreadable; every
    record, leaf and proof stays valid."""
    with _log(config) as log:
        count = shred_subject(log, subject, actor=_actor(actor), reason=reason)
    console.print(f"destroyed {count} key(s) of {subject}", highlight=False)
