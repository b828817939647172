"""``appliance up``: the whole appliance on one machine (the embedded default)."""

from __future__ import annotations

from rich.panel import Panel

from appliance.audit.retention import RetentionPolicy, enforce_floor
from appliance.cli.common import ConfigOption, console, settings_from
from appliance.cli.embedding_engine import embedding_supervisor, start_in_background
from appliance.cli.engine import exit_on_sigterm, start_engine
from appliance.config import Settings
from appliance.db import create_db_engine, upgrade_database
from appliance.engine import EngineSupervisor
from appliance.gateway.run import gateway_url, run_gateway
from appliance.gateway.services import utc_now
from appliance.identity.apikeys import ApiKeyService, bootstrap_admin_key
from appliance.keys.deployment import DeploymentSecrets, deployment_secrets

__all__ = ["up"]


def up(config: ConfigOption = None) -> None:
    """Migrate the database, prepare the models, start vLLM (a chat engine and an
    embedding engine) and the gateway. Ctrl-C stops everything."""
    settings = settings_from(config)
    # Refuse a retention period below the floor before the engine spends minutes starting.
    enforce_floor(RetentionPolicy.from_settings(settings.audit.retention))
    exit_on_sigterm()
    secrets = deployment_secrets(settings)

    database = create_db_engine(settings.database_url)
    try:
        with console.status("migrating database"):
            upgrade_database(database)
        admin = bootstrap_admin_key(ApiKeyService(database, secrets.api_key_pepper), now=utc_now())
    finally:
        database.dispose()

    supervisors: list[EngineSupervisor] = []
    try:
        _start_engines(settings, secrets, supervisors)
        url = gateway_url(settings)
        models = ", ".join(f"{u.model} ({u.kind})" for u in settings.effective_upstreams())
        lines = [f"gateway:  {url}/v1", f"models:   {models}"]
        if admin is not None:
            lines += [
                "",
                "admin API key (shown once, store it now):",
                admin.secret,
            ]
        console.print(Panel("\n".join(lines), title="appliance is up", expand=False))
        run_gateway(settings, secrets, config_file=config)
    except KeyboardInterrupt:
        pass
    finally:
        for supervisor in reversed(supervisors):
            console.print(f"stopping engine {supervisor.spec.served_model_name}")
            supervisor.stop()


def _start_engines(
    settings: Settings, secrets: DeploymentSecrets, supervisors: list[EngineSupervisor]
) -> None:
    """The chat engine and the embedding engine, each appended to ``supervisors`` as soon
    as it exists (so the caller stops whatever started). On CPUs the two warm up at once,
    on cores of their own; on GPUs the chat engine starts first, since each vLLM measures
    the GPU memory it may take while starting."""
    chat, embedding = settings.engine.enabled, settings.embedding_engine_enabled
    overlap = chat and embedding and settings.embedding_engine.device == "cpu"
    background = None
    if embedding and (overlap or not chat):
        supervisors.append(embedding_supervisor(settings, secrets))
        background = start_in_background(supervisors[-1])
    if chat:
        supervisors.append(start_engine(settings, secrets))
    if embedding and background is None:
        supervisors.append(embedding_supervisor(settings, secrets))
        background = start_in_background(supervisors[-1])
    if background is not None:
        background.wait()
