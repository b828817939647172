"""``appliance config show``."""

from __future__ import annotations

import typer
import yaml

from appliance.cli.common import ConfigOption, console, settings_from
from appliance.config import masked_settings

__all__ = ["app"]

app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)


@app.command("show")
def show(config: ConfigOption = None) -> None:
    """Print the effective configuration (file + APPLIANCE_* env), secrets masked."""
    settings = settings_from(config)
    console.print(yaml.safe_dump(masked_settings(settings), sort_keys=False), highlight=False)
