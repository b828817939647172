"""``appliance up``: the whole appliance on one machine (the embedded default)."""

from __future__ import annotations

from rich.panel import Panel

from appliance.cli.common import ConfigOption, console, settings_from
from appliance.cli.engine import exit_on_sigterm, start_engine
from appliance.db import create_db_engine, upgrade_database
from appliance.engine import EngineSupervisor
from appliance.gateway.run import gateway_url, run_gateway
from appliance.gateway.services import utc_now
from appliance.identity.apikeys import ApiKeyService, bootstrap_admin_key
from appliance.keys.deployment import deployment_secrets

__all__ = ["up"]


def up(config: ConfigOption = None) -> None:
    """Migrate the database, prepare the model, start vLLM and the gateway.
    Ctrl-C stops everything."""
    settings = settings_from(config)
    exit_on_sigterm()
    secrets = deployment_secrets(settings)

    database = create_db_engine(settings.database_url)
    try:
        with console.status("migrating database"):
            upgrade_database(database)
        admin = bootstrap_admin_key(ApiKeyService(database, secrets.api_key_pepper), now=utc_now())
    finally:
        database.dispose()

    supervisor: EngineSupervisor | None = None
    try:
        if settings.engine.enabled:
            supervisor = start_engine(settings, secrets)
        url = gateway_url(settings)
        lines = [
            f"gateway:  {url}/v1",
            f"models:   {', '.join(u.model for u in settings.effective_upstreams())}",
        ]
        if admin is not None:
            lines += [
                "",
                "admin API key (shown once, store it now):",
                admin.secret,
            ]
        console.print(Panel("\n".join(lines), title="appliance is up", expand=False))
        run_gateway(settings, secrets)
    except KeyboardInterrupt:
        pass
    finally:
        if supervisor is not None:
            console.print("stopping engine")
            supervisor.stop()
