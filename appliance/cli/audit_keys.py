"""``appliance audit keys init-hsm|status``: the audit log's signing and master keys.

Thin: parses, calls appliance.audit.hsm_admin, prints (docs/audit.md, Keys in an HSM).
"""

from __future__ import annotations

from typing import Annotated

import typer

from appliance.audit.hsm_admin import TokenReport, file_keys, key_backend_report, provision
from appliance.audit.hsm_session import TokenConfig
from appliance.cli.common import ConfigOption, console, settings_from

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
