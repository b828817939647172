"""Engine replicas of each model: health, outstanding requests, circuit breaking, and
the choice of replica (least outstanding requests, optionally prefix affinity).

State changes are synchronous (one event loop, no awaits inside), so they need no lock.
Time is a parameter.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Replica", "ReplicaPool", "ReplicaState", "rendezvous_order"]


@dataclass
class Replica:
    model: str
    url: str
    outstanding: int = 0
    healthy: bool = True  # last active health check
    consecutive_failures: int = 0
    open_until_s: float = 0.0  # circuit open (no traffic) until then
    served: int = 0

    def available(self, now_s: float) -> bool:
        return self.healthy and now_s >= self.open_until_s

    def state(self, now_s: float) -> ReplicaState:
        return ReplicaState(
            model=self.model,
            url=self.url,
            healthy=self.healthy,
            outstanding=self.outstanding,
            consecutive_failures=self.consecutive_failures,
            circuit_open=now_s < self.open_until_s,
        )


@dataclass(frozen=True)
class ReplicaState:
    """A replica as reported (readiness, the admin page): a copy, so a report never
    holds the pool's live state."""

    model: str
    url: str
    healthy: bool  # last active health check
    outstanding: int
    consecutive_failures: int
    circuit_open: bool


def rendezvous_order(key: str, urls: Iterable[str]) -> list[str]:
    """Highest-random-weight order of ``urls`` for ``key``: stable, and removing one
    replica only moves the keys that lived on it."""

    def weight(url: str) -> bytes:
        return hashlib.sha256(f"{url}\n{key}".encode()).digest()

    return sorted(urls, key=weight, reverse=True)


class ReplicaPool:
    def __init__(
        self,
        replicas: Mapping[str, Sequence[str]],
        *,
        failure_threshold: int = 3,
        circuit_open_s: float = 30.0,
        affinity_max_imbalance: int = 4,
    ) -> None:
        self._replicas = {
            model: [Replica(model, url) for url in dict.fromkeys(urls)]
            for model, urls in replicas.items()
        }
        self._failure_threshold = failure_threshold
        self._circuit_open_s = circuit_open_s
        self._max_imbalance = affinity_max_imbalance

    def models(self) -> list[str]:
        return list(self._replicas)

    def replicas(self, model: str | None = None) -> list[Replica]:
        if model is not None:
            return list(self._replicas.get(model, []))
        return [replica for group in self._replicas.values() for replica in group]

    def outstanding(self) -> int:
        return sum(replica.outstanding for replica in self.replicas())

    def order(self, model: str, *, now_s: float, affinity_key: str | None = None) -> list[Replica]:
        """The replicas to try, best first: available ones by fewest outstanding requests
        (the affine one first unless it is much busier), then unavailable ones as a last
        resort (a check may be stale; the caller tries them after the others)."""
        group = self._replicas.get(model, [])
        available = [r for r in group if r.available(now_s)]
        rest = sorted((r for r in group if not r.available(now_s)), key=lambda r: r.open_until_s)
        ranked = sorted(available, key=lambda r: (r.outstanding, r.served))
        if affinity_key is not None and available:
            by_url = {r.url: r for r in available}
            preferred = by_url[rendezvous_order(affinity_key, by_url)[0]]
            if preferred.outstanding - ranked[0].outstanding <= self._max_imbalance:
                ranked.remove(preferred)
                ranked.insert(0, preferred)
        return ranked + rest

    def started(self, replica: Replica) -> None:
        replica.outstanding += 1
        replica.served += 1

    def finished(self, replica: Replica) -> None:
        replica.outstanding = max(0, replica.outstanding - 1)

    def succeeded(self, replica: Replica) -> None:
        replica.consecutive_failures = 0
        replica.open_until_s = 0.0
        replica.healthy = True

    def failed(self, replica: Replica, *, now_s: float) -> None:
        """A connection failure or 503: after ``failure_threshold`` in a row the circuit
        opens; when it closes again the next request is the trial."""
        replica.consecutive_failures += 1
        if replica.consecutive_failures >= self._failure_threshold:
            replica.open_until_s = now_s + self._circuit_open_s

    def checked(self, replica: Replica, healthy: bool, *, now_s: float) -> None:
        if healthy:
            replica.healthy = True
            if replica.open_until_s and replica.consecutive_failures >= self._failure_threshold:
                replica.open_until_s = now_s  # the engine is back: close the circuit
                replica.consecutive_failures = 0
        else:
            replica.healthy = False
