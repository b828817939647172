"""The deployment's own secrets: from configuration, or generated once in the data dir."""

from __future__ import annotations

from dataclasses import dataclass

from appliance.config import Settings
from appliance.keys.files import load_or_create_secret

__all__ = ["DeploymentSecrets", "deployment_secrets"]


@dataclass(frozen=True)
class DeploymentSecrets:
    engine_api_key: str  # shared secret between gateway and engines
    api_key_pepper: str  # HMAC key for stored API-key hashes

    def __repr__(self) -> str:
        return "DeploymentSecrets(engine_api_key='***', api_key_pepper='***')"


def deployment_secrets(settings: Settings) -> DeploymentSecrets:
    secrets_dir = settings.data_dir / "secrets"
    engine_key = settings.engine.api_key
    pepper = settings.auth.api_key_pepper
    return DeploymentSecrets(
        engine_api_key=engine_key.get_secret_value()
        if engine_key
        else load_or_create_secret(secrets_dir / "engine_api_key"),
        api_key_pepper=pepper.get_secret_value()
        if pepper
        else load_or_create_secret(secrets_dir / "api_key_pepper"),
    )
