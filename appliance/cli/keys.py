"""``appliance keys create|list|revoke``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Annotated

import typer
from rich.table import Table

from appliance.cli.common import ConfigOption, console, settings_from
from appliance.db import create_db_engine
from appliance.errors import InvalidRequest
from appliance.gateway.services import utc_now
from appliance.identity.apikeys import TEAM_PATTERN, ApiKeyService
from appliance.identity.roles import Role
from appliance.keys.deployment import deployment_secrets

__all__ = ["app"]

app = typer.Typer(
    help="API keys for services and people who cannot use OIDC.", no_args_is_help=True
)


@contextmanager
def _service(config: ConfigOption) -> Iterator[ApiKeyService]:
    settings = settings_from(config)
    database = create_db_engine(settings.database_url)
    try:
        yield ApiKeyService(database, deployment_secrets(settings).api_key_pepper)
    finally:
        database.dispose()


@app.command("create")
def create(
    name: Annotated[str, typer.Option(help="What the key is for, e.g. 'ci-pipeline'")],
    owner: Annotated[str, typer.Option(help="Person or service responsible for the key")],
    role: Annotated[
        list[str] | None, typer.Option("--role", help="Role (repeatable)", show_default=False)
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option(
            "--model", help="Allowed model glob (repeatable; default: all the roles allow)"
        ),
    ] = None,
    team: Annotated[
        str | None,
        typer.Option("--team", help="Team the caller acts for (per-team adapters)"),
    ] = None,
    expires_in_days: Annotated[
        int | None, typer.Option(help="Expire after this many days (default: never)")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Create a key and print it once. Only its keyed hash is stored."""
    if expires_in_days is not None and expires_in_days < 1:
        raise InvalidRequest("--expires-in-days must be at least 1")
    if team is not None and not re.match(TEAM_PATTERN, team):
        raise InvalidRequest(f"--team {team!r}: letters, digits and . _ @ / - (at most 128)")
    now = utc_now()
    with _service(config) as service:
        created = service.create(
            name=name,
            owner=owner,
            roles=role or [Role.USER.value],
            models=model or None,
            now=now,
            team=team,
            expires_at=now + timedelta(days=expires_in_days) if expires_in_days else None,
        )
    console.print(f"key id: {created.record.key_id}", highlight=False)
    console.print("API key (shown once, store it now):", highlight=False)
    typer.echo(created.secret)


@app.command("list")
def list_keys(config: ConfigOption = None) -> None:
    """List keys (never their secrets)."""
    now = utc_now()
    table = Table()
    table.add_column("key id", no_wrap=True, min_width=12)  # copied into `keys revoke`
    for heading in ("name", "owner", "team", "roles", "models", "created", "expires", "state"):
        table.add_column(heading)
    with _service(config) as service:
        records = service.list()
    for record in records:
        state = (
            "revoked" if record.revoked_at else ("active" if record.is_active(now) else "expired")
        )
        table.add_row(
            record.key_id,
            record.name,
            record.owner,
            record.team or "-",
            ",".join(record.roles),
            ",".join(record.models) if record.models else "(by role)",
            record.created_at.strftime("%Y-%m-%d %H:%M"),
            record.expires_at.strftime("%Y-%m-%d") if record.expires_at else "never",
            state,
        )
    console.print(table)


@app.command("revoke")
def revoke(key_id: str, config: ConfigOption = None) -> None:
    """Revoke a key; running gateways refuse it within auth.api_key_cache_s (10 s)."""
    settings = settings_from(config)
    with _service(config) as service:
        revoked = service.revoke(key_id, now=utc_now())
    if not revoked:
        raise InvalidRequest(f"no active key with id {key_id}")
    console.print(
        f"revoked {key_id}; running gateways refuse it within "
        f"{settings.auth.api_key_cache_s:g} s (their key cache)"
    )
