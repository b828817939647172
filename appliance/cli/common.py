"""What every command shares: loading settings, printing, one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from appliance.config import Settings, load_settings

__all__ = ["ConfigOption", "console", "err_console", "settings_from"]

console = Console()
err_console = Console(stderr=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="Configuration file (default: $APPLIANCE_CONFIG or ./appliance.yaml if present)",
        show_default=False,
    ),
]


def settings_from(config: Path | None) -> Settings:
    return load_settings(config)
