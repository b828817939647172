"""Entry point: assembles the command groups and turns errors into one line."""

from __future__ import annotations

import sys

import typer

from appliance.cli import (
    adapters,
    audit,
    bundle,
    certs,
    config_cmd,
    db,
    doctor,
    engine,
    identity,
    keys,
    models,
    plan,
    receipt,
    serve,
    tco,
    up,
    witness,
)
from appliance.cli.common import err_console
from appliance.errors import ApplianceError

__all__ = ["app", "main"]

app = typer.Typer(
    name="appliance",
    help="Sovereign inference appliance: open models on your own hardware, "
    "behind identity, audit and quotas.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("up")(up.up)
app.command("serve")(serve.serve)
app.command("plan")(plan.plan)
app.command("doctor")(doctor.doctor)
app.command("tco")(tco.tco)
app.add_typer(engine.app, name="engine")
app.add_typer(models.app, name="models")
app.add_typer(adapters.app, name="adapters")
app.add_typer(keys.app, name="keys")
app.add_typer(identity.app, name="identity")
app.add_typer(config_cmd.app, name="config")
app.add_typer(db.app, name="db")
app.add_typer(audit.app, name="audit")
app.add_typer(certs.app, name="certs")
app.add_typer(bundle.app, name="bundle")
app.add_typer(witness.app, name="witness")
app.add_typer(receipt.app, name="receipt")


def main() -> None:
    try:
        app()
    except ApplianceError as exc:
        # One line, never wrapped, and the message is data, not Rich markup.
        err_console.print("error:", style="red", end=" ", soft_wrap=True)
        err_console.print(exc.message, markup=False, highlight=False, soft_wrap=True)
        sys.exit(1)
