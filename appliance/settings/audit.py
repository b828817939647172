"""``audit:``: the tamper-evident, encrypted audit log."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from appliance.settings.base import Section
from appliance.settings.retention import AuditRetentionSettings

__all__ = [
    "AuditForwardSettings",
    "AuditKeysSettings",
    "AuditPkcs11Settings",
    "AuditSettings",
    "AuditSpoolSettings",
    "AuditWitnessSettings",
]

SyslogFacility = Literal[
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
    "authpriv", "ftp", "ntp", "audit", "alert", "clock", "local0", "local1", "local2",
    "local3", "local4", "local5", "local6", "local7",
]  # fmt: skip


class AuditForwardSettings(Section):
    """Forwarding record metadata (never content) to a SIEM: `appliance audit forward`
    (docs/audit.md, "Forwarding to your SIEM"). Off while ``host`` is unset."""

    host: str | None = Field(
        default=None, description="The SIEM's syslog receiver; unset: forwarding is off"
    )
    port: int | None = Field(
        default=None, ge=1, le=65535, description="Default: 6514 for tls, 514 for tcp and udp"
    )
    transport: Literal["tls", "tcp", "udp"] = Field(
        default="tls",
        description="tls: RFC 5425; tcp: RFC 6587 octet counting; udp: RFC 5426, one "
        "datagram per record and no delivery guarantee",
    )
    format: Literal["syslog", "cef", "ocsf"] = Field(
        default="syslog",
        description="RFC 5424 message carrying: syslog structured data, a CEF line or an "
        "OCSF 1.8.0 API Activity event (JSON)",
    )
    ca_file: Path | None = Field(
        default=None, description="CA bundle for the receiver's certificate (default: system)"
    )
    cert_file: Path | None = Field(default=None, description="Client certificate (mutual TLS)")
    key_file: Path | None = Field(default=None, description="Its private key")
    server_name: str | None = Field(
        default=None, description="Name the receiver's certificate must carry; default: host"
    )
    facility: SyslogFacility = Field(default="authpriv", description="Syslog facility")
    app_name: str = Field(
        default="appliance", pattern=r"^[!-~]{1,48}$", description="Syslog APP-NAME"
    )
    hostname: str | None = Field(
        default=None,
        pattern=r"^[!-~]{1,255}$",
        description="Syslog HOSTNAME; default: this host's name",
    )
    sd_id: str = Field(
        default="appliance@32473",
        max_length=32,
        pattern=r"^[!#-<>-?A-\\^-~]+@[0-9]+(\.[0-9]+)*$",
        description="SD-ID of the structured data (format syslog): name@<your IANA private "
        "enterprise number>; 32473 is the number reserved for documentation (RFC 5612)",
    )
    batch_records: int = Field(
        default=500, ge=1, le=100_000, description="Most records sent in one batch"
    )
    poll_interval_s: float = Field(
        default=2.0, gt=0, description="Follow mode: how often to look for new records"
    )
    timeout_s: float = Field(
        default=10.0, gt=0, description="Connect, send and confirm timeout of one batch"
    )
    max_backoff_s: float = Field(
        default=60.0, gt=0, description="Follow mode: longest wait between retries"
    )
    cursor_file: Path | None = Field(
        default=None,
        description="Deprecated: the position is kept in the database (table "
        "audit_forward_cursor). Only read once, to import the position of an earlier "
        "version's cursor file while that table is empty; default: "
        "<data_dir>/audit_forward_cursor.json",
    )

    @model_validator(mode="after")
    def _pair(self) -> AuditForwardSettings:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("audit.forward.cert_file and key_file go together")
        return self


class AuditWitnessSettings(Section):
    """A witness (C2SP tlog-witness) that cosigns this log's checkpoints and remembers
    the largest one, so a rollback is caught by `audit verify` (docs/audit.md,
    "Witnesses")."""

    verifier_key: str = Field(
        description="The witness's cosigning key, `<name>+<id>+<key>` (type 0x04; "
        "`appliance witness init` prints it)"
    )
    url: str = Field(description="Its submission and monitoring prefix, e.g. https://w.example/")
    ca_file: Path | None = Field(default=None, description="CA bundle for an https witness")
    timeout_s: float = Field(default=10.0, gt=0, description="Per request")


class AuditPkcs11Settings(Section):
    """A PKCS#11 token (HSM) holding the audit log's keys: `appliance audit keys init-hsm`
    puts them there (docs/audit.md, "Keys in an HSM")."""

    module: Path | None = Field(
        default=None,
        description="The vendor's PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so",
    )
    token_label: str | None = Field(
        default=None, min_length=1, max_length=32, description="Label of the token to use"
    )
    pin_file: Path | None = Field(
        default=None,
        description="File holding the token's user PIN (mode 0600); never the PIN itself",
    )
    signing_key_label: str = Field(
        default="appliance-audit-signing",
        min_length=1,
        description="Label of the key pair that signs checkpoints (CKM_EDDSA or CKM_ECDSA)",
    )
    algorithm: Literal["auto", "ed25519", "ecdsa-p256"] = Field(
        default="auto",
        description="Checkpoint signing key type: auto takes Ed25519 where the token offers "
        "CKM_EDDSA, else ECDSA P-256 (C2SP signed-note type 0x02); the key found in the "
        "token must be of this type",
    )
    master_key_label: str = Field(
        default="appliance-audit-master",
        min_length=1,
        description="Label of the AES-256 key that wraps subject keys (CKM_AES_GCM)",
    )


class AuditKeysSettings(Section):
    """Where the checkpoint signing key and the audit master key are held."""

    backend: Literal["file", "pkcs11"] = Field(
        default="file",
        description="file: key files under <data_dir>/secrets (or audit.master_key_file, "
        "signing_key_file, key_provider vault); pkcs11: both keys in an HSM, used there",
    )
    pkcs11: AuditPkcs11Settings = Field(
        default_factory=AuditPkcs11Settings, description="The token, for backend pkcs11"
    )

    @model_validator(mode="after")
    def _pkcs11_complete(self) -> AuditKeysSettings:
        token = self.pkcs11
        if self.backend == "pkcs11" and not (token.module and token.token_label and token.pin_file):
            raise ValueError(
                "audit.keys.backend pkcs11 needs audit.keys.pkcs11.module, token_label and pin_file"
            )
        return self


class AuditSpoolSettings(Section):
    """A durable local spool in front of the log (docs/audit.md, "The spool"): a request
    waits for one local fdatasync instead of a database commit; a drainer seals the
    spooled records into the log. Off: each batch is committed to the database on the
    request path."""

    enabled: bool = Field(default=False, description="Acknowledge records once spooled")
    directory: Path | None = Field(
        default=None,
        description="Local directory (one per host or pod, never shared storage); "
        "default: <data_dir>/audit-spool",
    )
    segment_bytes: int = Field(
        default=4 << 20, ge=4096, description="A spool file rolls over at this size"
    )
    max_bytes: int = Field(
        default=1 << 30,
        ge=1 << 20,
        description="Records not yet sealed may take this much; beyond it requests are "
        "refused with 503 (the database is away too long)",
    )
    drain_records: int = Field(
        default=1024, ge=1, description="Records sealed per database transaction"
    )


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
    spool: AuditSpoolSettings = Field(
        default_factory=AuditSpoolSettings,
        description="A durable local spool: records acknowledged once on local disk",
    )
    retention: AuditRetentionSettings = Field(
        default_factory=AuditRetentionSettings,
        description="How long sealed content is kept, per event kind, and the floor",
    )
    retention_days: int | None = Field(
        default=None,
        ge=1,
        description="Deprecated: use audit.retention.default_days (this value is copied there)",
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
    keys: AuditKeysSettings = Field(
        default_factory=AuditKeysSettings,
        description="Where the signing and master keys are held: files or a PKCS#11 HSM",
    )
    forward: AuditForwardSettings = Field(
        default_factory=AuditForwardSettings,
        description="Forward record metadata to a SIEM (`appliance audit forward`)",
    )
    witnesses: list[AuditWitnessSettings] = Field(
        default_factory=list,
        description="Witnesses that cosign checkpoints (`appliance witness submit`); "
        "`audit verify` checks the log against each",
    )

    @model_validator(mode="after")
    def _retention_days_alias(self) -> AuditSettings:
        # Configs written before audit.retention keep working: the old single period
        # becomes the default period (both set and different is a mistake to report).
        days = self.retention_days
        if days is None:
            return self
        if "default_days" in self.retention.model_fields_set and (
            self.retention.default_days != days
        ):
            raise ValueError(
                "audit.retention_days (deprecated) and audit.retention.default_days differ; "
                "keep only audit.retention.default_days"
            )
        self.retention = self.retention.model_copy(update={"default_days": days})
        return self

    @model_validator(mode="after")
    def _vault_complete(self) -> AuditSettings:
        if self.key_provider == "vault" and not (self.vault_url and self.vault_token):
            raise ValueError("audit.key_provider vault needs audit.vault_url and vault_token")
        return self

    @model_validator(mode="after")
    def _one_master_key(self) -> AuditSettings:
        if self.keys.backend == "pkcs11" and self.key_provider == "vault":
            raise ValueError(
                "audit.keys.backend pkcs11 holds the master key in the token: leave "
                "audit.key_provider at file (Vault and the HSM cannot both hold it)"
            )
        return self
