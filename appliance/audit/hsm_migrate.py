"""`appliance audit keys migrate --to pkcs11`: move a running log's keys from files
(or Vault) into a PKCS#11 token, keeping every earlier proof valid.

Run it with the gateway stopped and appliance.yaml still on ``audit.keys.backend:
file``, with ``audit.keys.pkcs11`` naming the token. In order:

1. the token gets its keys (:func:`~appliance.audit.hsm_admin.provision`): a master key
   made in the token, and a new signing key made there, or with ``keep_signing_key``
   today's Ed25519 file key imported (the log's verifier key then stays the same);
2. every subject key not shredded is unwrapped with the old master key and wrapped
   again in the token, in one database transaction (a subject key already wrapped by
   the token, left by an interrupted run, is kept);
3. an ``audit.keys`` record names the old and the new verifier key, the master key
   ids and the number of keys re-wrapped, and the checkpoint covering it is signed by
   both keys (appliance.audit.key_history), so checkpoints signed before and after
   verify under one key history.

A second run after success changes nothing and appends no record.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, select, update

from appliance.audit.access import Actor, record_act
from appliance.audit.checkpoint import NoteSigner
from appliance.audit.hsm import open_hsm_keys
from appliance.audit.hsm_admin import TokenReport, provision
from appliance.audit.hsm_session import TokenConfig
from appliance.audit.key_history import change_details, read_key_history
from appliance.audit.keyring import SubjectKeyRing, wrap_context
from appliance.audit.log import AuditLog
from appliance.audit.records import AuditEvent
from appliance.audit.wiring import audit_keys
from appliance.config import Settings
from appliance.db.tables import audit_subject_keys
from appliance.errors import ConfigurationError, VerificationError
from appliance.keys.provider import KeyProvider

__all__ = ["MigrationReport", "migrate_to_pkcs11", "rewrap_subject_keys"]


@dataclass(frozen=True)
class MigrationReport:
    token: TokenReport
    previous_key: str
    key: str
    rewrapped: int
    kept: int  # already wrapped by the token (an earlier, interrupted run)
    record_index: int | None  # the audit.keys record; None when nothing was left to do
    checkpoint_size: int | None


def rewrap_subject_keys(engine: Engine, old: KeyProvider, new: KeyProvider) -> tuple[int, int]:
    """Step 2: (re-wrapped, already under ``new``), in one transaction: a failure leaves
    every key as it was."""
    rewrapped = kept = 0
    master_key_id = new.key_id[:64]
    with engine.begin() as connection:
        rows = connection.execute(
            select(
                audit_subject_keys.c.key_id,
                audit_subject_keys.c.subject,
                audit_subject_keys.c.wrapped_key,
            )
            .where(audit_subject_keys.c.wrapped_key.is_not(None))
            .order_by(audit_subject_keys.c.key_id)
        ).all()
        for key_id, subject, wrapped in rows:
            context = wrap_context(key_id, subject)
            try:
                key = old.unwrap(wrapped, context=context)
            except VerificationError:
                try:
                    new.unwrap(wrapped, context=context)
                except VerificationError as exc:
                    raise ConfigurationError(
                        f"subject key {key_id} opens with neither the old master key "
                        f"({old.key_id}) nor the token's ({new.key_id}); nothing was changed"
                    ) from exc
                kept += 1
                continue
            connection.execute(
                update(audit_subject_keys)
                .where(audit_subject_keys.c.key_id == key_id)
                .values(wrapped_key=new.wrap(key, context=context), master_key_id=master_key_id)
            )
            rewrapped += 1
    return rewrapped, kept


def migrate_to_pkcs11(
    settings: Settings, engine: Engine, *, actor: Actor, keep_signing_key: bool = False
) -> MigrationReport:
    """Steps 1-3 of the module doc; ConfigurationError naming what is wrong."""
    audit = settings.audit
    if audit.keys.backend == "pkcs11":
        raise ConfigurationError(
            "audit.keys.backend is already pkcs11: run the migration with the old key "
            "settings (backend file) and audit.keys.pkcs11 naming the token"
        )
    config = TokenConfig.from_settings(audit.keys.pkcs11)
    old_provider, old_signer = audit_keys(settings)
    old_verifier = old_signer.verifier()
    # 1.
    imported = old_signer if keep_signing_key else None
    report = provision(config, audit.origin, signing_key=imported)
    keys = open_hsm_keys(config)
    try:
        new_signer = keys.signer(audit.origin)
        new_verifier = new_signer.verifier()
        # 2.
        rewrapped, kept = rewrap_subject_keys(engine, old_provider, keys.master_key)
        # 3.
        changed = new_verifier.verifier_key() != old_verifier.verifier_key()
        history = read_key_history(engine, old_verifier)
        done = history.current.verifier_key() == new_verifier.verifier_key() and (
            len(history.epochs) > 1 if changed else kept > 0
        )
        if done and rewrapped == 0:  # an earlier run finished: nothing to record
            return MigrationReport(report, old_verifier.verifier_key(),
                                   new_verifier.verifier_key(), 0, kept, None, None)  # fmt: skip
        # The old key signs (the log's latest checkpoint is its), the new one co-signs.
        handover = NoteSigner(
            audit.origin, old_signer.private_key, also=new_signer if changed else None
        )
        log = AuditLog(
            engine,
            keyring=SubjectKeyRing(engine, keys.master_key),
            signer=handover,
            origin=audit.origin,
            clock=lambda: datetime.now(UTC),
            checkpoint_interval_s=audit.checkpoint_interval_s,
            record_content=audit.record_content,
        )
        log.open()
        details = change_details(
            old_verifier, new_verifier, backend="pkcs11", token=config.token_label,
            algorithm=new_verifier.algorithm, master_key_from=old_provider.key_id,
            master_key_to=keys.master_key.key_id, rewrapped=rewrapped,
        )  # fmt: skip
        record = record_act(log, actor, AuditEvent.AUDIT_KEYS, details, path="audit keys migrate")
        checkpoint = log.checkpoint()
        found = log.store.entry(record.record_id)
        return MigrationReport(
            token=report,
            previous_key=old_verifier.verifier_key(),
            key=new_verifier.verifier_key(),
            rewrapped=rewrapped,
            kept=kept,
            record_index=found.entry.index if found is not None else None,
            checkpoint_size=checkpoint.tree_size if checkpoint is not None else None,
        )
    finally:
        keys.close()
