"""``appliance config show``."""

from __future__ import annotations

import typer
import yaml

from appliance.cli.common import ConfigOption, settings_from
from appliance.config import masked_settings

__all__ = ["app"]

app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)


@app.command("show")
def show(config: ConfigOption = None) -> None:
    """Print the effective configuration (file + APPLIANCE_* env), secrets masked."""
    settings = settings_from(config)
    # Plain echo: values are data (a stop string like "[/INST]" is not Rich markup) and
    # the output must stay valid YAML when redirected, so no wrapping either.
    typer.echo(yaml.safe_dump(masked_settings(settings), sort_keys=False), nl=False)
