"""Building the audit log from settings: key provider, signing key, log, writer.

The keys come from files (or Vault for the master key), or with ``audit.keys.backend:
pkcs11`` both from one PKCS#11 token (appliance.audit.hsm), where they stay."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, select

from appliance.audit.checkpoint import NoteSigner, NoteVerifier
from appliance.audit.hsm import open_hsm_keys
from appliance.audit.hsm_session import TokenConfig
from appliance.audit.keyring import SubjectKeyRing
from appliance.audit.log import AuditLog
from appliance.audit.sink import LogSink
from appliance.audit.spool import Spool
from appliance.audit.spool_writer import SpoolingWriter
from appliance.audit.writer import GroupCommitWriter
from appliance.config import Settings
from appliance.db.tables import audit_subject_keys
from appliance.errors import ConfigurationError
from appliance.keys.provider import FileKeyProvider, KeyProvider, VaultTransitKeyProvider
from appliance.keys.signing import load_signer

__all__ = [
    "audit_key_provider",
    "audit_keys",
    "audit_signer",
    "audit_verifier",
    "audit_writer",
    "group_commit_writer",
    "open_audit_log",
    "spool_directory",
]


def _now() -> datetime:
    return datetime.now(UTC)


def audit_key_provider(settings: Settings) -> KeyProvider:
    audit = settings.audit
    if audit.keys.backend == "pkcs11":
        return open_hsm_keys(TokenConfig.from_settings(audit.keys.pkcs11)).master_key
    if audit.key_provider == "vault":
        assert audit.vault_url is not None and audit.vault_token is not None  # validated
        return VaultTransitKeyProvider(
            audit.vault_url,
            audit.vault_token.get_secret_value(),
            audit.vault_key,
            mount=audit.vault_mount,
        )
    path = audit.master_key_file or settings.data_dir / "secrets" / "audit_master_key"
    return FileKeyProvider.from_file(path)


def audit_signer(settings: Settings) -> NoteSigner:
    if settings.audit.keys.backend == "pkcs11":
        keys = open_hsm_keys(TokenConfig.from_settings(settings.audit.keys.pkcs11))
        return keys.signer(settings.audit.origin)
    path = settings.audit.signing_key_file or settings.data_dir / "secrets" / "audit_signing_key"
    return load_signer(path, settings.audit.origin)


def audit_verifier(settings: Settings) -> NoteVerifier:
    return audit_signer(settings).verifier()


def audit_keys(settings: Settings) -> tuple[KeyProvider, NoteSigner]:
    """The master-key provider and the checkpoint signer; with pkcs11, both on one token
    session (a second login from this process would only share the first)."""
    if settings.audit.keys.backend == "pkcs11":
        keys = open_hsm_keys(TokenConfig.from_settings(settings.audit.keys.pkcs11))
        return keys.master_key, keys.signer(settings.audit.origin)
    return audit_key_provider(settings), audit_signer(settings)


def open_audit_log(
    settings: Settings, engine: Engine, *, clock: Callable[[], datetime] = _now
) -> AuditLog:
    """An opened log (blocking: reads the tail since the latest checkpoint)."""
    provider, signer = audit_keys(settings)
    keyring = SubjectKeyRing(engine, provider)
    if settings.audit.keys.backend == "pkcs11":
        keyring.check_master_key()  # a wrong key in the token keeps the gateway down
    else:
        _refuse_keys_moved_to_a_token(engine, provider)
    log = AuditLog(
        engine,
        keyring=keyring,
        signer=signer,
        origin=settings.audit.origin,
        clock=clock,
        checkpoint_interval_s=settings.audit.checkpoint_interval_s,
        record_content=settings.audit.record_content,
    )
    log.open()
    return log


def _refuse_keys_moved_to_a_token(engine: Engine, provider: KeyProvider) -> None:
    """After `appliance audit keys migrate --to pkcs11` the subject keys are wrapped by
    the token: a gateway left on key files would wrap new ones under the old key and
    sign with the old checkpoint key, which `audit verify` reports as forged."""
    with engine.connect() as connection:
        newest = connection.execute(
            select(audit_subject_keys.c.master_key_id)
            .where(audit_subject_keys.c.wrapped_key.is_not(None))
            .order_by(audit_subject_keys.c.created_at.desc())
            .limit(1)
        ).scalar()
    if isinstance(newest, str) and newest.startswith("pkcs11:"):
        raise ConfigurationError(
            f"the audit keys were moved into a PKCS#11 token ({newest}; `appliance audit "
            f"keys migrate`), but audit.keys.backend is file ({provider.key_id}): set "
            "audit.keys.backend: pkcs11"
        )


def audit_writer(settings: Settings, log: AuditLog) -> LogSink:
    """The gateway's sink in front of ``log``: the spool when ``audit.spool.enabled``,
    else group commit straight to the database."""
    audit = settings.audit
    if not audit.spool.enabled:
        return group_commit_writer(settings, log)
    spool = Spool(
        spool_directory(settings),
        segment_bytes=audit.spool.segment_bytes,
        max_bytes=audit.spool.max_bytes,
    )
    return SpoolingWriter(
        log,
        spool,
        max_records=audit.batch_max_records,
        max_wait_ms=audit.batch_max_wait_ms,
        drain_records=audit.spool.drain_records,
        checkpoint_interval_s=audit.checkpoint_interval_s,
    )


def spool_directory(settings: Settings) -> Path:
    return settings.audit.spool.directory or settings.data_dir / "audit-spool"


def group_commit_writer(settings: Settings, log: AuditLog) -> GroupCommitWriter:
    return GroupCommitWriter(
        log,
        max_records=settings.audit.batch_max_records,
        max_wait_ms=settings.audit.batch_max_wait_ms,
        checkpoint_interval_s=settings.audit.checkpoint_interval_s,
    )
