"""API keys: random 256-bit secrets, shown once, stored only as a keyed hash."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Engine, func, insert, select, update

from appliance.db.tables import api_keys
from appliance.identity.principal import AuthMethod, Principal
from appliance.identity.roles import Role

__all__ = [
    "ADMIN_ROLES",
    "API_KEY_PREFIX",
    "TEAM_PATTERN",
    "ApiKeyRecord",
    "ApiKeyService",
    "NewApiKey",
    "bootstrap_admin_key",
    "generate_api_key",
    "hash_api_key",
]

API_KEY_PREFIX = "sk-appl-"
# What a key's team may be (the same names adapters are granted to).
TEAM_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@/-]{0,127}$"


def generate_api_key() -> str:
    """A new key: the prefix (so scanners can spot leaks) and 256 random bits."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(pepper: str, secret: str) -> str:
    """HMAC-SHA256 with a server-side pepper: a stolen table alone cannot be brute-forced
    offline, and equal keys in two deployments hash differently."""
    return hmac.new(pepper.encode(), secret.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class ApiKeyRecord:
    key_id: str
    name: str
    owner: str
    roles: tuple[str, ...]
    models: tuple[str, ...] | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    team: str | None = None

    def is_active(self, now: datetime) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or now < self.expires_at

    def principal(self) -> Principal:
        return Principal(
            subject=f"apikey:{self.key_id}",
            username=self.owner,
            auth_method=AuthMethod.API_KEY,
            roles=frozenset(self.roles),
            model_globs=self.models,
            team=self.team,
            key_id=self.key_id,
        )


@dataclass(frozen=True)
class NewApiKey:
    secret: str = field(repr=False)  # shown once, never stored
    record: ApiKeyRecord


def _to_utc(value: datetime | None) -> datetime | None:
    """Times are stored in UTC: SQLite keeps no offset, so anything else would shift."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime: pass an aware (UTC) time")
    return value.astimezone(UTC)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite returns naive datetimes (stored as UTC); PostgreSQL returns the session's
    # time zone. Either way, hand back UTC.
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _record(row: object) -> ApiKeyRecord:
    mapping = row._mapping  # type: ignore[attr-defined]
    return ApiKeyRecord(
        key_id=mapping["key_id"],
        name=mapping["name"],
        owner=mapping["owner"],
        roles=tuple(mapping["roles"]),
        models=None if mapping["models"] is None else tuple(mapping["models"]),
        created_at=_aware(mapping["created_at"]),  # type: ignore[arg-type]
        expires_at=_aware(mapping["expires_at"]),
        revoked_at=_aware(mapping["revoked_at"]),
        team=mapping["team"],
    )


class ApiKeyService:
    """Create, list, revoke and check API keys in the database."""

    def __init__(self, engine: Engine, pepper: str):
        self._engine = engine
        self._pepper = pepper

    def create(
        self,
        *,
        name: str,
        owner: str,
        roles: Sequence[str],
        models: Sequence[str] | None,
        now: datetime,
        expires_at: datetime | None = None,
        team: str | None = None,
    ) -> NewApiKey:
        secret = generate_api_key()
        record = ApiKeyRecord(
            key_id=secrets.token_hex(6),
            name=name,
            owner=owner,
            roles=tuple(roles),
            models=None if models is None else tuple(models),
            created_at=_to_utc(now),  # type: ignore[arg-type]
            expires_at=_to_utc(expires_at),
            revoked_at=None,
            team=team,
        )
        with self._engine.begin() as connection:
            connection.execute(
                insert(api_keys).values(
                    key_id=record.key_id,
                    key_hash=hash_api_key(self._pepper, secret),
                    name=record.name,
                    owner=record.owner,
                    roles=list(record.roles),
                    models=None if record.models is None else list(record.models),
                    created_at=record.created_at,
                    expires_at=record.expires_at,
                    team=record.team,
                )
            )
        return NewApiKey(secret=secret, record=record)

    def list(self) -> list[ApiKeyRecord]:
        with self._engine.connect() as connection:
            rows = connection.execute(select(api_keys).order_by(api_keys.c.created_at))
            return [_record(row) for row in rows]

    def count(self) -> int:
        return len(self.list())

    def revoke(self, key_id: str, *, now: datetime) -> bool:
        """Mark a key revoked; False when no such active key exists."""
        with self._engine.begin() as connection:
            result = connection.execute(
                update(api_keys)
                .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=_to_utc(now))
            )
            return bool(result.rowcount)

    def revocations(self) -> int:
        """How many keys were ever revoked: a version of the revocation state, since a
        key is never un-revoked or deleted (every process's caches compare it)."""
        with self._engine.connect() as connection:
            return int(connection.execute(select(func.count(api_keys.c.revoked_at))).scalar_one())

    def get(self, key_id: str) -> ApiKeyRecord | None:
        """The stored key with this id (active or not), or None."""
        with self._engine.connect() as connection:
            row = connection.execute(select(api_keys).where(api_keys.c.key_id == key_id)).first()
        return None if row is None else _record(row)

    def digest(self, secret: str) -> str:
        """The keyed hash a key is stored (and cached) under."""
        return hash_api_key(self._pepper, secret)

    def find(self, secret: str) -> ApiKeyRecord | None:
        """The stored key matching ``secret`` (active or not), or None. The lookup is by
        keyed hash, so timing reveals nothing about stored keys."""
        if not secret.startswith(API_KEY_PREFIX):
            return None
        with self._engine.connect() as connection:
            row = connection.execute(
                select(api_keys).where(api_keys.c.key_hash == self.digest(secret))
            ).first()
        return None if row is None else _record(row)

    def authenticate(self, secret: str, *, now: datetime) -> ApiKeyRecord | None:
        """The active key matching ``secret``, or None."""
        record = self.find(secret)
        return record if record is not None and record.is_active(now) else None


ADMIN_ROLES = (Role.ADMIN.value, Role.USER.value)


def bootstrap_admin_key(service: ApiKeyService, *, now: datetime) -> NewApiKey | None:
    """On first start (no keys at all), create the admin key; else None."""
    if service.count() > 0:
        return None
    return service.create(
        name="bootstrap-admin", owner="admin", roles=ADMIN_ROLES, models=None, now=now
    )
