"""A short-lived, bounded cache of API-key lookups for the gateway's hot path.

Without it every request pays an indexed SELECT and a thread hop. Entries are keyed by
the keyed hash (never the secret), hold negative answers too (so a flood of wrong keys
does not become a flood of queries), and live ``ttl_s`` seconds. Expiry times are
checked on every hit.

Revocations reach every process (gateway workers, replicas) within
``version_check_s``: the number of revoked keys is a version of the revocation state
(keys are never un-revoked or deleted). A process reads it at most every
``version_check_s`` (one cheap query, paid by the request that finds it due), and an
entry fetched under another version is a miss. A revoke through :meth:`revoke` returns
only after ``version_check_s``, so when the admin API answers, every process refuses
the key on its next request.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from appliance.identity.apikeys import ApiKeyRecord, ApiKeyService

__all__ = ["REVOCATION_CHECK_S", "ApiKeyCache", "CacheMiss"]

# How stale another process's revocation may be here; the per-request cost of reading
# it is one COUNT query per this interval per process, shared by every request.
REVOCATION_CHECK_S = 0.25


class CacheMiss:
    """Returned by :meth:`ApiKeyCache.lookup` when the database must be asked."""


_MISS = CacheMiss()


@dataclass(frozen=True)
class _Entry:
    record: ApiKeyRecord | None
    fetched_at_s: float
    revocations: int | None  # the revocation version when it was fetched


class ApiKeyCache:
    def __init__(
        self,
        service: ApiKeyService,
        *,
        ttl_s: float,
        clock_s: Callable[[], float],
        max_entries: int = 10_000,
        version_check_s: float = REVOCATION_CHECK_S,
        sleep_s: Callable[[float], None] = time.sleep,
    ) -> None:
        self._service = service
        self._ttl_s = ttl_s
        self._clock_s = clock_s
        self._max_entries = max_entries
        self._version_check_s = version_check_s
        self._sleep_s = sleep_s
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._revocations: int | None = None
        self._checked_at_s: float | None = None

    @property
    def service(self) -> ApiKeyService:
        return self._service

    def version_due(self) -> bool:
        """Whether the revocation version must be read before trusting an entry."""
        return self._checked_at_s is None or (
            self._clock_s() - self._checked_at_s >= self._version_check_s
        )

    def lookup(self, secret: str, *, now: datetime) -> ApiKeyRecord | CacheMiss | None:
        """No I/O: the cached answer, or :data:`CacheMiss` (also when the revocation
        version is due: :meth:`authenticate` reads it)."""
        if self._ttl_s <= 0 or self.version_due():
            return _MISS
        digest = self._service.digest(secret)
        entry = self._entries.get(digest)
        if (
            entry is None
            or entry.revocations != self._revocations
            or self._clock_s() - entry.fetched_at_s >= self._ttl_s
        ):
            return _MISS
        if entry.record is None or not entry.record.is_active(now):
            return None
        return entry.record

    def authenticate(self, secret: str, *, now: datetime) -> ApiKeyRecord | None:
        """Ask the database (blocking) and remember the answer."""
        if self._ttl_s > 0 and self.version_due():
            self.check_revocations()
            # Often only the version was due: if it has not moved, the entry is as good
            # as any hit, and reading the key again would be a second query for nothing.
            cached = self.lookup(secret, now=now)
            if not isinstance(cached, CacheMiss):
                return cached
        version = self._revocations  # read before the key: a revoke in between is newer
        stored = self._service.find(secret)
        if self._ttl_s > 0:
            digest = self._service.digest(secret)
            self._entries[digest] = _Entry(stored, self._clock_s(), version)
            self._entries.move_to_end(digest)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
        return stored if stored is not None and stored.is_active(now) else None

    def check_revocations(self) -> None:
        """Read the revocation version (blocking); entries of an older one become misses
        (and are dropped here)."""
        started = self._clock_s()  # a revoke committed before this read is seen by it
        revocations = self._service.revocations()
        if revocations != self._revocations:
            self._entries.clear()
            self._revocations = revocations
        self._checked_at_s = started

    def revoke(self, key_id: str, *, now: datetime) -> bool:
        """Revoke in the database and forget the key here at once; return once every
        other process reads the new version before its next cache hit."""
        revoked = self._service.revoke(key_id, now=now)
        self.forget(key_id)
        if revoked and self._ttl_s > 0:
            self._sleep_s(self._version_check_s)
        return revoked

    def forget(self, key_id: str) -> None:
        for digest, entry in list(self._entries.items()):
            if entry.record is not None and entry.record.key_id == key_id:
                del self._entries[digest]
