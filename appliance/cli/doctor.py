"""``appliance doctor``: endpoints, networks, TLS and engine environment at a glance."""

from __future__ import annotations

import typer
from rich.table import Table

from appliance.cli.common import ConfigOption, console, settings_from
from appliance.doctor import diagnose

__all__ = ["doctor"]

_MARK = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "fail": "[red]FAIL[/]"}


def doctor(config: ConfigOption = None) -> None:
    """List every configured endpoint; flag any outside the allowed networks (exit 1)."""
    report = diagnose(settings_from(config))
    table = Table("kind", "name", "endpoint", "addresses", "inside", "tls")
    for e in report.endpoints:
        inside = "?" if e.inside is None else ("yes" if e.inside else "[red]NO[/]")
        table.add_row(e.kind, e.name, e.url, ", ".join(e.addresses) or "-", inside, e.tls)
    console.print(table)
    for finding in report.findings:
        console.print(f"{_MARK[finding.level]} {finding.message}")
    if report.failed:
        raise typer.Exit(1)
