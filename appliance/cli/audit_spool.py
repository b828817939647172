"""What `appliance audit verify` says about the spool (audit.spool): records spooled
and not yet sealed into the log, and records the drainer had to keep aside."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer

from appliance.audit.spool import spooled_records, unsealable_records
from appliance.audit.store import SqlAuditStore
from appliance.audit.wiring import spool_directory
from appliance.cli.common import console
from appliance.config import Settings

__all__ = ["SpoolReport", "print_spool_report", "spool_report"]


@dataclass(frozen=True)
class SpoolReport:
    directory: Path
    waiting: int  # spooled, not yet in the log
    unsealable: int  # kept aside by the drainer: acknowledged, not in the log


def spool_report(settings: Settings, store: SqlAuditStore) -> SpoolReport | None:
    """None when this host has no spool directory (spool off, or another host's)."""
    directory = spool_directory(settings)
    if not directory.is_dir():
        return None
    ids = [record.record_id for record in spooled_records(directory)]
    with store.engine.connect() as connection:
        sealed = SqlAuditStore.recorded_ids_in(connection, ids)
    kept = [r for r in unsealable_records(directory) if r is None or r.record_id not in sealed]
    return SpoolReport(directory, len(set(ids) - sealed), len(kept))


def print_spool_report(report: SpoolReport) -> None:
    """One line for records still spooled; exits 1 when some could not be sealed."""
    if report.waiting:
        console.print(
            f"{report.waiting} records are spooled in {report.directory} and not yet sealed "
            "into the log (the gateway's drainer seals them; a stopped gateway seals them "
            "at its next start)",
            highlight=False,
        )
    if report.unsealable:
        console.print(
            f"[red]{report.unsealable} spooled records could not be sealed and are kept "
            f"in {report.directory / 'unsealable.seg'}[/red]: see docs/audit.md, "
            '"The spool"',
            highlight=False,
        )
        raise typer.Exit(1)
