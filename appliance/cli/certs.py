"""``appliance certs``: an internal CA for sites without a PKI."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from appliance.cli.common import console
from appliance.pki import init_ca

__all__ = ["app"]

app = typer.Typer(help="TLS certificates for the gateway and engines", no_args_is_help=True)


@app.command("init")
def init(
    directory: Annotated[
        Path, typer.Option("--dir", help="Where to write the CA and certificates")
    ],
    gateway_host: Annotated[
        list[str] | None,
        typer.Option("--gateway-host", help="DNS name or IP of the gateway (repeatable)"),
    ] = None,
    engine: Annotated[
        list[str] | None,
        typer.Option(
            "--engine",
            help="NAME=HOST[,HOST...] of an engine replica (repeatable), e.g. engine-0=10.0.0.5",
        ),
    ] = None,
    days: Annotated[int, typer.Option(help="Validity of issued certificates")] = 397,
) -> None:
    """Create ca.crt/ca.key (kept if present) and issue gateway.crt and one certificate
    per engine (server and client use, for mutual TLS)."""
    engines: dict[str, list[str]] = {}
    for spec in engine or []:
        name, _, hosts = spec.partition("=")
        if not name or not hosts:
            raise typer.BadParameter(f"--engine {spec!r}: use NAME=HOST[,HOST...]")
        engines[name] = [host for host in hosts.split(",") if host]
    issued = init_ca(
        directory,
        gateway_hosts=gateway_host or ["localhost", "127.0.0.1"],
        engines=engines,
        days=days,
        now=datetime.now(UTC),
    )
    console.print(f"CA: {directory / 'ca.crt'} (keep ca.key offline once issuing is done)")
    for name, files in issued.items():
        console.print(f"{name}: {files.cert} {files.key}")
