"""Key material providers: local secret files, the audit master key (file or Vault
transit) and the audit signing key (``appliance.keys.signing``)."""

from __future__ import annotations

from appliance.keys.deployment import DeploymentSecrets, deployment_secrets
from appliance.keys.files import load_or_create_secret
from appliance.keys.provider import FileKeyProvider, KeyProvider, VaultTransitKeyProvider

__all__ = [
    "DeploymentSecrets",
    "FileKeyProvider",
    "KeyProvider",
    "VaultTransitKeyProvider",
    "deployment_secrets",
    "load_or_create_secret",
]
