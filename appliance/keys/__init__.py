"""Key material providers: local secret files now, Vault transit later."""

from __future__ import annotations

from appliance.keys.deployment import DeploymentSecrets, deployment_secrets
from appliance.keys.files import load_or_create_secret

__all__ = ["DeploymentSecrets", "deployment_secrets", "load_or_create_secret"]
