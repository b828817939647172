"""``appliance identity bootstrap|export-realm|check``: the Keycloak side of sign-in."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from appliance.cli.common import ConfigOption, console, settings_from
from appliance.config import Settings
from appliance.errors import ConfigurationError, InvalidRequest
from appliance.identity.bootstrap import bootstrap_realm
from appliance.identity.realm import RealmSpec, realm_representation

__all__ = ["app"]

app = typer.Typer(help="Keycloak realm provisioning and checks.", no_args_is_help=True)

PublicUrl = Annotated[
    str | None,
    typer.Option(help="The gateway's URL as browsers reach it (default: oidc.public_url)"),
]
Realm = Annotated[str | None, typer.Option(help="Realm name (default: oidc.realm)")]


def _spec(settings: Settings, public_url: str | None, realm: str | None) -> RealmSpec:
    url = public_url or settings.oidc.public_url
    if not url or not url.startswith(("http://", "https://")):
        raise InvalidRequest(
            "--public-url (or oidc.public_url) is required, e.g. https://llm.example"
        )
    return RealmSpec(
        public_url=url,
        realm=realm or settings.oidc.realm,
        gateway_client_id=settings.oidc.gateway_client_id,
        browser_client_id=settings.oidc.browser_client_id,
    )


@app.command("export-realm")
def export_realm(
    public_url: PublicUrl = None,
    realm: Realm = None,
    out: Annotated[Path | None, typer.Option(help="Write here instead of stdout")] = None,
    config: ConfigOption = None,
) -> None:
    """Print the realm as Keycloak import JSON (kc.sh import, --import-realm, Operator).
    The gateway secret is the placeholder ${APPLIANCE_OIDC_GATEWAY_CLIENT_SECRET}."""
    spec = _spec(settings_from(config), public_url, realm)
    text = json.dumps(realm_representation(spec), indent=2) + "\n"
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        console.print(f"wrote {out}", highlight=False)


@app.command("bootstrap")
def bootstrap(
    admin_user: Annotated[str, typer.Option(help="Keycloak admin user")] = "admin",
    admin_password: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            envvar="APPLIANCE_KEYCLOAK_ADMIN_PASSWORD",
            help="Keycloak admin password (or $APPLIANCE_KEYCLOAK_ADMIN_PASSWORD)",
        ),
    ] = "",
    admin_realm: Annotated[str, typer.Option(help="Realm the admin user lives in")] = "master",
    server_url: Annotated[
        str | None, typer.Option(help="Keycloak URL (default: oidc.server_url)")
    ] = None,
    public_url: PublicUrl = None,
    realm: Realm = None,
    gateway_secret: Annotated[
        str | None,
        typer.Option(
            envvar="APPLIANCE_OIDC__GATEWAY_CLIENT_SECRET",
            help="Set the gateway client's secret (default: keep or let Keycloak generate)",
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Create or update the realm, roles, clients and mappers (idempotent)."""
    from keycloak import KeycloakAdmin
    from keycloak.exceptions import KeycloakError

    settings = settings_from(config)
    url = server_url or settings.oidc.server_url
    if not url:
        raise ConfigurationError("--server-url (or oidc.server_url) is required")
    spec = _spec(settings, public_url, realm)
    verify: bool | str = str(settings.oidc.ca_bundle) if settings.oidc.ca_bundle else True
    try:
        admin: Any = KeycloakAdmin(
            server_url=url.rstrip("/") + "/",
            username=admin_user,
            password=admin_password,
            realm_name=admin_realm,
            user_realm_name=admin_realm,
            verify=verify,
        )
        report = bootstrap_realm(admin, spec, gateway_secret=gateway_secret)
    except KeycloakError as exc:
        raise InvalidRequest(f"Keycloak refused: {exc}") from exc
    for item in report.created:
        console.print(f"created {item}", highlight=False)
    for item in report.updated:
        console.print(f"updated {item}", highlight=False)
    if not report.created and not report.updated:
        console.print("realm already up to date", highlight=False)
    console.print(
        f"set oidc.server_url={url}, oidc.realm={spec.realm}, and the gateway client secret "
        "in APPLIANCE_OIDC__GATEWAY_CLIENT_SECRET (Keycloak admin console: Clients > "
        f"{spec.gateway_client_id} > Credentials)",
        highlight=False,
    )


@app.command("check")
def check(config: ConfigOption = None) -> None:
    """Fetch the realm's discovery document and signing keys with the current settings."""
    settings = settings_from(config)
    if not settings.oidc.enabled:
        raise ConfigurationError("oidc.enabled is false: nothing to check")

    async def probe() -> tuple[dict[str, Any], int]:
        from appliance.identity.jwks import parse_jwks
        from appliance.identity.keycloak import KeycloakGateway

        keycloak = KeycloakGateway(settings.oidc)
        try:
            discovery = await keycloak.discovery()
            return discovery, len(parse_jwks(await keycloak.fetch_jwks()))
        finally:
            await keycloak.aclose()

    try:
        discovery, keys = asyncio.run(probe())
    except Exception as exc:
        raise InvalidRequest(f"cannot reach the realm: {exc}") from exc
    expected = settings.oidc.effective_issuer
    console.print(f"issuer: {discovery.get('issuer')}", highlight=False)
    console.print(f"signing keys: {keys}", highlight=False)
    if discovery.get("issuer") != expected:
        raise ConfigurationError(
            f"tokens will carry iss={discovery.get('issuer')} but oidc expects {expected}: "
            "set oidc.issuer, or Keycloak's hostname"
        )
    console.print("ok", highlight=False)
