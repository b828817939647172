"""Per-subject keys: created on first use, wrapped by the master key, shredded on request.

A subject key is 256 random bits (never derived from the master key: a derived key
could be derived again after "shredding"). Its wrapped form is the only copy at rest;
shredding overwrites it with NULL, after which nothing can open that subject's
envelopes. Unwrapped keys are cached in memory by key id, and every batch re-reads
which keys are still active, so a shred in another process takes effect at the next
batch here.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Connection, Engine, and_, bindparam, insert, select, update

from appliance.db.tables import audit_subject_keys
from appliance.errors import ConfigurationError, VerificationError
from appliance.keys.provider import KeyProvider

__all__ = ["SubjectKeyRing", "wrap_context"]


# Built once: this runs in every audit batch, and building the expression each time
# cost about as much as running it.
_ACTIVE_KEYS = (
    select(
        audit_subject_keys.c.key_id,
        audit_subject_keys.c.subject,
        audit_subject_keys.c.wrapped_key,
    )
    .where(
        and_(
            audit_subject_keys.c.subject.in_(bindparam("subjects", expanding=True)),
            audit_subject_keys.c.wrapped_key.is_not(None),
        )
    )
    .order_by(audit_subject_keys.c.created_at, audit_subject_keys.c.key_id)
)


def wrap_context(key_id: str, subject: str) -> bytes:
    return f"appliance-audit/subject-key/v1\n{key_id}\n{subject}".encode()


class SubjectKeyRing:
    def __init__(self, engine: Engine, provider: KeyProvider) -> None:
        self._engine = engine
        self._provider = provider
        self._cache: dict[str, tuple[str, bytes]] = {}  # key id -> (subject, key)
        self._staged: dict[str, tuple[str, bytes]] = {}

    @property
    def provider(self) -> KeyProvider:
        return self._provider

    def keys_for(
        self, connection: Connection, subjects: Iterable[str], now: datetime
    ) -> dict[str, tuple[str, bytes]]:
        """subject -> (key id, key) inside the caller's transaction, creating missing
        keys there. Call :meth:`commit` after the transaction commits, :meth:`discard`
        if it fails (a key whose row was rolled back must never be used)."""
        wanted = sorted(set(subjects))
        if not wanted:
            return {}
        rows = connection.execute(_ACTIVE_KEYS, {"subjects": wanted}).all()
        found: dict[str, tuple[str, bytes]] = {}
        for key_id, subject, wrapped in rows:
            cached = self._cache.get(key_id)
            if cached is None:
                key = self._provider.unwrap(wrapped, context=wrap_context(key_id, subject))
                self._staged[key_id] = (subject, key)
            else:
                key = cached[1]
            found.setdefault(subject, (key_id, key))
        for subject in wanted:
            if subject in found:
                continue
            key_id = secrets.token_hex(16)
            key = secrets.token_bytes(32)
            connection.execute(
                insert(audit_subject_keys).values(
                    key_id=key_id,
                    subject=subject,
                    wrapped_key=self._provider.wrap(key, context=wrap_context(key_id, subject)),
                    master_key_id=self._provider.key_id[:64],
                    created_at=now,
                )
            )
            self._staged[key_id] = (subject, key)
            found[subject] = (key_id, key)
        # Keys no longer active (shredded elsewhere) leave the cache now.
        active = {key_id for key_id, _subject, _wrapped in rows}
        asked = set(wanted)
        for key_id, (subject, _key) in list(self._cache.items()):
            if subject in asked and key_id not in active:
                del self._cache[key_id]
        return found

    def check_master_key(self) -> None:
        """Unwrap the newest active subject key: a master key that does not open the keys
        in the database fails here, at start-up, instead of at some subject's next
        request. ConfigurationError naming both master keys."""
        with self._engine.connect() as connection:
            row = connection.execute(
                select(
                    audit_subject_keys.c.key_id,
                    audit_subject_keys.c.subject,
                    audit_subject_keys.c.wrapped_key,
                    audit_subject_keys.c.master_key_id,
                )
                .where(audit_subject_keys.c.wrapped_key.is_not(None))
                .order_by(audit_subject_keys.c.created_at.desc(), audit_subject_keys.c.key_id)
                .limit(1)
            ).first()
        if row is None:
            return
        try:
            self._provider.unwrap(row.wrapped_key, context=wrap_context(row.key_id, row.subject))
        except VerificationError as exc:
            raise ConfigurationError(
                f"the audit master key {self._provider.key_id} does not open the subject keys "
                f"in the database (the newest was wrapped by {row.master_key_id}); import that "
                "key instead (`appliance audit keys init-hsm --import-files`)"
            ) from exc

    def commit(self) -> None:
        self._cache.update(self._staged)
        self._staged.clear()

    def discard(self) -> None:
        self._staged.clear()

    def key(self, key_id: str) -> bytes | None:
        """The unwrapped key, or None when it was shredded (or never existed)."""
        with self._engine.connect() as connection:
            row = connection.execute(
                select(audit_subject_keys.c.subject, audit_subject_keys.c.wrapped_key).where(
                    audit_subject_keys.c.key_id == key_id
                )
            ).first()
        if row is None or row.wrapped_key is None:
            self._cache.pop(key_id, None)
            return None
        return self._provider.unwrap(row.wrapped_key, context=wrap_context(key_id, row.subject))

    def shred(self, subject: str, now: datetime) -> int:
        """Destroy every key of ``subject``; return how many were destroyed."""
        with self._engine.begin() as connection:
            result = connection.execute(
                update(audit_subject_keys)
                .where(
                    and_(
                        audit_subject_keys.c.subject == subject,
                        audit_subject_keys.c.wrapped_key.is_not(None),
                    )
                )
                .values(wrapped_key=None, shredded_at=now)
            )
            key_ids = [
                key_id
                for (key_id,) in connection.execute(
                    select(audit_subject_keys.c.key_id).where(
                        audit_subject_keys.c.subject == subject
                    )
                )
            ]
        for key_id in key_ids:
            self._cache.pop(key_id, None)
        return int(result.rowcount or 0)
