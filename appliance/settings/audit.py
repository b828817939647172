"""``audit:``: the tamper-evident, encrypted audit log."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from appliance.settings.base import Section

__all__ = ["AuditSettings"]


class AuditSettings(Section):
    """The tamper-evident, encrypted audit log (docs/audit.md)."""

    origin: str = Field(
        default="appliance.local/audit",
        description="Checkpoint origin line naming this deployment's log (also the signing "
        "key's name); no spaces or '+'",
        pattern=r"^[^\s+]+$",
    )
    record_content: bool = Field(
        default=True, description="Seal prompts and answers in the encrypted envelope"
    )
    batch_max_records: int = Field(default=256, ge=1, description="Group commit: batch size")
    batch_max_wait_ms: float = Field(
        default=0.0,
        ge=0,
        description="Group commit: how long a batch waits for more records; 0: commit at "
        "once (records that arrive during a commit form the next batch)",
    )
    checkpoint_interval_s: float = Field(
        default=10.0, gt=0, description="Sign a checkpoint at most this often while busy"
    )
    retention_days: int = Field(
        default=365, ge=1, description="`audit retention apply` drops content older than this"
    )
    key_provider: Literal["file", "vault"] = Field(
        default="file", description="Where the master key lives"
    )
    master_key_file: Path | None = Field(
        default=None, description="Default: <data_dir>/secrets/audit_master_key (mode 0600)"
    )
    signing_key_file: Path | None = Field(
        default=None, description="Default: <data_dir>/secrets/audit_signing_key (mode 0600)"
    )
    vault_url: str | None = Field(default=None, description="Vault/OpenBao base URL")
    vault_token: SecretStr | None = None
    vault_mount: str = "transit"
    vault_key: str = Field(default="appliance-audit", description="Transit key (aes256-gcm96)")

    @model_validator(mode="after")
    def _vault_complete(self) -> AuditSettings:
        if self.key_provider == "vault" and not (self.vault_url and self.vault_token):
            raise ValueError("audit.key_provider vault needs audit.vault_url and vault_token")
        return self
