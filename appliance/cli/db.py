"""``appliance db upgrade``: migrations are an explicit step."""

from __future__ import annotations

import typer

from appliance.cli.common import ConfigOption, console, settings_from
from appliance.db import create_db_engine, current_revision, upgrade_database

__all__ = ["app"]

app = typer.Typer(help="Database schema.", no_args_is_help=True)


@app.command("upgrade")
def upgrade(config: ConfigOption = None) -> None:
    """Apply all pending migrations."""
    settings = settings_from(config)
    engine = create_db_engine(settings.database_url)
    try:
        upgrade_database(engine)
        console.print(f"database at revision {current_revision(engine)}")
    finally:
        engine.dispose()
