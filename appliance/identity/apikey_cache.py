"""A short-lived, bounded cache of API-key lookups for the gateway's hot path.

Without it every request pays an indexed SELECT and a thread hop. Entries are keyed by
the keyed hash (never the secret), hold negative answers too (so a flood of wrong keys
does not become a flood of queries), and live ``ttl_s`` seconds: a key revoked through
this process's admin API stops working at once; one revoked from another process (the
CLI, another gateway replica) within ``ttl_s``. Expiry times are checked on every hit.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from appliance.identity.apikeys import ApiKeyRecord, ApiKeyService

__all__ = ["ApiKeyCache", "CacheMiss"]


class CacheMiss:
    """Returned by :meth:`ApiKeyCache.lookup` when the database must be asked."""


_MISS = CacheMiss()


@dataclass(frozen=True)
class _Entry:
    record: ApiKeyRecord | None
    fetched_at_s: float


class ApiKeyCache:
    def __init__(
        self,
        service: ApiKeyService,
        *,
        ttl_s: float,
        clock_s: Callable[[], float],
        max_entries: int = 10_000,
    ) -> None:
        self._service = service
        self._ttl_s = ttl_s
        self._clock_s = clock_s
        self._max_entries = max_entries
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    @property
    def service(self) -> ApiKeyService:
        return self._service

    def lookup(self, secret: str, *, now: datetime) -> ApiKeyRecord | CacheMiss | None:
        """No I/O: the cached answer, or :data:`CacheMiss`."""
        if self._ttl_s <= 0:
            return _MISS
        digest = self._service.digest(secret)
        entry = self._entries.get(digest)
        if entry is None or self._clock_s() - entry.fetched_at_s >= self._ttl_s:
            return _MISS
        if entry.record is None or not entry.record.is_active(now):
            return None
        return entry.record

    def authenticate(self, secret: str, *, now: datetime) -> ApiKeyRecord | None:
        """Ask the database (blocking) and remember the answer."""
        stored = self._service.find(secret)
        if self._ttl_s > 0:
            digest = self._service.digest(secret)
            self._entries[digest] = _Entry(stored, self._clock_s())
            self._entries.move_to_end(digest)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
        return stored if stored is not None and stored.is_active(now) else None

    def revoke(self, key_id: str, *, now: datetime) -> bool:
        """Revoke in the database and forget the key here at once."""
        revoked = self._service.revoke(key_id, now=now)
        self.forget(key_id)
        return revoked

    def forget(self, key_id: str) -> None:
        for digest, entry in list(self._entries.items()):
            if entry.record is not None and entry.record.key_id == key_id:
                del self._entries[digest]
