"""``appliance audit keys init-hsm|status|migrate|history``: the audit log's signing and
master keys.

Thin: parses, calls appliance.audit.hsm_admin, prints (docs/audit.md, Keys in an HSM).
"""

from __future__ import annotations

import getpass
import json
from typing import Annotated

import typer

from appliance.audit.access import Actor
from appliance.audit.hsm_admin import TokenReport, file_keys, key_backend_report, provision
from appliance.audit.hsm_migrate import migrate_to_pkcs11
from appliance.audit.hsm_session import TokenConfig
from appliance.audit.key_history import read_key_history
from appliance.audit.wiring import audit_verifier
from appliance.cli.common import ConfigOption, console, settings_from
from appliance.db import create_db_engine
from appliance.errors import InvalidRequest

__all__ = ["keys_app"]

keys_app = typer.Typer(
    help="The log's checkpoint signing key and master key: files or a PKCS#11 HSM.",
    no_args_is_help=True,
)

_MARK = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "fail": "[red]FAIL[/]"}


def _print_report(report: TokenReport) -> None:
    for line in report.done:
        console.print(line, highlight=False, markup=False)
    console.print(f"token {report.token!r} ({report.model})", highlight=False, markup=False)
    for facts in (report.signing, report.master):
        console.print(f"  {facts.describe()}", highlight=False, markup=False)
    console.print(f"  master key id: {report.master_key_id}", highlight=False, markup=False)
    console.print("verifier key (give it to auditors and witnesses):", highlight=False)
    typer.echo(report.verifier_key)


@keys_app.command("init-hsm")
def init_hsm(
    import_files: Annotated[
        bool,
        typer.Option(
            "--import-files",
            help="Import today's key files (audit.master_key_file, signing_key_file) instead "
            "of generating keys: earlier checkpoints and subject keys stay valid",
        ),
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Put the audit keys into the token named by audit.keys.pkcs11: an Ed25519 signing
    key pair and an AES-256 master key, sensitive and not extractable. Keys already on
    the token are kept. Prints the verifier key."""
    settings = settings_from(config)
    token = TokenConfig.from_settings(settings.audit.keys.pkcs11)
    master, signer = file_keys(settings) if import_files else (None, None)
    report = provision(token, settings.audit.origin, master_key=master, signing_key=signer)
    _print_report(report)
    if import_files:
        console.print(
            "The key files are still on disk: move them to offline storage or destroy them; "
            "while they exist, root on this host can read the keys.",
            highlight=False,
        )
    if settings.audit.keys.backend != "pkcs11":
        console.print(
            "Now set audit.keys.backend: pkcs11 in appliance.yaml and restart the gateway.",
            highlight=False,
        )


@keys_app.command("status")
def status(config: ConfigOption = None) -> None:
    """Where the audit keys are; for a token, whether it holds them sensitive and not
    extractable (exit 1 if not)."""
    settings = settings_from(config)
    findings, report = key_backend_report(settings)
    for level, message in findings:
        console.print(f"{_MARK[level]} ", end="")
        console.print(message, highlight=False, markup=False)
    if report is not None:
        console.print(f"master key id: {report.master_key_id}", highlight=False, markup=False)
        console.print("verifier key:", highlight=False)
        typer.echo(report.verifier_key)
    if any(level == "fail" for level, _ in findings):
        raise typer.Exit(1)


@keys_app.command("migrate")
def migrate(
    to: Annotated[
        str,
        typer.Option(
            "--to", help="Where the keys go: pkcs11 (the token named by audit.keys.pkcs11)"
        ),
    ],
    keep_signing_key: Annotated[
        bool,
        typer.Option(
            "--keep-signing-key",
            help="Import today's Ed25519 signing key into the token instead of starting a "
            "new one (the verifier key stays the same; not with algorithm ecdsa-p256)",
        ),
    ] = False,
    actor: Annotated[
        str | None, typer.Option("--actor", help="Who acts (recorded); default: the OS user")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Move the log's keys from files (or Vault) into the PKCS#11 token: re-wrap every
    subject key under the token's master key, start a signing key there (or import
    today's), record the change in the log and sign the handover checkpoint with both
    keys. Stop the gateway first; keep audit.keys.backend at file until this is done."""
    if to != "pkcs11":
        raise InvalidRequest("--to: only pkcs11 is supported")
    settings = settings_from(config)
    username = actor or getpass.getuser()
    engine = create_db_engine(settings.database_url)
    try:
        report = migrate_to_pkcs11(
            settings,
            engine,
            actor=Actor(subject=f"cli:{username}", username=username, auth_method="cli"),
            keep_signing_key=keep_signing_key,
        )
    finally:
        engine.dispose()
    _print_report(report.token)
    if report.record_index is None:
        console.print("Nothing to do: this log's keys were migrated already.", highlight=False)
        return
    console.print(
        f"re-wrapped {report.rewrapped} subject keys under the token's master key"
        + (f" ({report.kept} were already)" if report.kept else ""),
        highlight=False,
    )
    console.print(
        f"recorded as audit record {report.record_index}; handover checkpoint at tree size "
        f"{report.checkpoint_size}",
        highlight=False,
    )
    if report.key != report.previous_key:
        console.print(
            f"the checkpoint key changed: earlier checkpoints verify under {report.previous_key}, "
            "later ones under the key above (`appliance audit keys history`)",
            highlight=False,
            markup=False,
        )
    console.print(
        "Now set audit.keys.backend: pkcs11 in appliance.yaml, restart the gateway, and move "
        "the old key files to offline storage or destroy them.",
        highlight=False,
    )


@keys_app.command("history")
def history(config: ConfigOption = None) -> None:
    """The log's checkpoint keys in order and the tree sizes each signs (JSON)."""
    settings = settings_from(config)
    engine = create_db_engine(settings.database_url)
    try:
        found = read_key_history(engine, audit_verifier(settings))
    finally:
        engine.dispose()
    typer.echo(json.dumps([epoch.describe() for epoch in found.epochs], indent=2))
