"""``appliance witness``: run a witness for another appliance's audit log (``init``,
``serve``), and, on the appliance, have the configured witnesses cosign the latest
checkpoint (``submit``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import httpx
import typer
import uvicorn

from appliance.audit.checkpoint import NoteVerifier
from appliance.audit.cosignature import Cosigner, CosignerVerifier
from appliance.audit.store import SqlAuditStore
from appliance.audit.wiring import audit_verifier
from appliance.audit.witness_server import WitnessConfig, load_witness, witness_app
from appliance.audit.witnessing import (
    WitnessCheck,
    WitnessEndpoint,
    check_witness,
    submit_checkpoint,
)
from appliance.cli.common import ConfigOption, console, settings_from
from appliance.config import Settings
from appliance.db import create_db_engine
from appliance.errors import InvalidRequest
from appliance.keys.files import load_or_create_secret

__all__ = ["app", "check_witnesses", "witness_endpoints", "witness_http"]

app = typer.Typer(
    help="Witnesses: cosign audit checkpoints elsewhere so a rolled-back log is caught.",
    no_args_is_help=True,
)


def witness_endpoints(settings: Settings) -> list[WitnessEndpoint]:
    return [
        WitnessEndpoint(CosignerVerifier.from_verifier_key(w.verifier_key), w.url)
        for w in settings.audit.witnesses
    ]


def witness_http(settings: Settings) -> httpx.Client:
    """One client for every configured witness (their CA files joined in order)."""
    cas = [w.ca_file for w in settings.audit.witnesses if w.ca_file is not None]
    timeout = max((w.timeout_s for w in settings.audit.witnesses), default=10.0)
    verify: bool | str = str(cas[0]) if cas else True
    return httpx.Client(timeout=timeout, verify=verify, trust_env=False)


def check_witnesses(
    settings: Settings, store: SqlAuditStore, verifier: NoteVerifier, records: int
) -> list[WitnessCheck]:
    """Check the verified log (``records`` long) against every configured witness; a
    witness that has cosigned nothing yet is left out of the answer."""
    checks = []
    with witness_http(settings) as http:
        for endpoint in witness_endpoints(settings):
            seen = check_witness(
                store, endpoint, origin=settings.audit.origin, verifier=verifier,
                records=records, http=http,
            )  # fmt: skip
            if seen is not None:
                checks.append(seen)
    return checks


@app.command("init")
def init(
    name: Annotated[str, typer.Option(help="The witness's name, e.g. witness.example/w1")],
    key_file: Annotated[Path, typer.Option(help="Where its cosigning key is kept (0600)")],
) -> None:
    """Create the witness's cosigning key (once) and print its verifier key, for the
    appliance's `audit.witnesses[].verifier_key`."""
    text = load_or_create_secret(key_file, factory=lambda: Cosigner.generate(name).signer_key())
    cosigner = Cosigner.from_signer_key(text)
    if cosigner.name != name:
        raise InvalidRequest(f"{key_file} already holds the key of witness {cosigner.name!r}")
    typer.echo(cosigner.verifier().verifier_key())


@app.command("serve")
def serve(
    config: Annotated[Path, typer.Option("--config", "-c", help="The witness's YAML file")],
) -> None:
    """Run the witness (C2SP tlog-witness add-checkpoint, and GET /checkpoints/<origin>).
    Put TLS in front of it (a reverse proxy) when it is reached over a network."""
    witness_config = WitnessConfig.from_file(config)
    witness = load_witness(witness_config)
    console.print(
        f"witness {witness.cosigner.name} on {witness_config.host}:{witness_config.port}, "
        f"key {witness.cosigner.verifier().verifier_key()}",
        highlight=False,
    )
    uvicorn.run(
        witness_app(witness), host=witness_config.host, port=witness_config.port,
        log_level="warning",
    )  # fmt: skip


@app.command("submit")
def submit(config: ConfigOption = None) -> None:
    """On the appliance: have every configured witness cosign the latest checkpoint
    (run it after `appliance audit checkpoint`, or from a timer). Exits non-zero if a
    witness refused or could not be reached; a witness that saw more records than the
    log holds means the log was rolled back."""
    settings = settings_from(config)
    endpoints = witness_endpoints(settings)
    if not endpoints:
        raise InvalidRequest("no witnesses configured: set audit.witnesses in appliance.yaml")
    engine = create_db_engine(settings.database_url)
    try:
        store = SqlAuditStore(engine)
        verifier = audit_verifier(settings)
        with witness_http(settings) as http:
            for endpoint in endpoints:
                size = submit_checkpoint(
                    store, endpoint, origin=settings.audit.origin, verifier=verifier, http=http
                )
                console.print(f"{endpoint.name}: cosigned the checkpoint at size {size}")
    finally:
        engine.dispose()
