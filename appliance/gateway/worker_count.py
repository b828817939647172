"""How many gateway worker processes to run (``gateway.workers``).

Several workers share one listening socket; what they must also share lives outside
process memory: browser sessions (the database), API-key revocations (a version read
from the database, :mod:`appliance.identity.apikey_cache`) and, when limits are set,
the rate and token counters, which only Redis shares. Hence the rule:

- ``auto`` is the number of usable cores (the cgroup CPU quota when lower), but 1
  when limits count in process memory (``limits.store: memory``) or when the
  database is SQLite (one file lock: extra writers only queue behind it) and the audit
  is committed per request (with ``audit.spool`` on, requests write no SQL);
- an explicit ``N > 1`` with limits counted in memory is refused by the settings
  themselves (``appliance config show`` says so too): each worker would grant the full
  quota again.

Pure apart from :func:`usable_cpus`, which reads the host.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from appliance.config import Settings

__all__ = ["WorkerPlan", "cgroup_cpu_quota", "plan_workers", "usable_cpus"]

_CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


@dataclass(frozen=True)
class WorkerPlan:
    count: int
    reason: str  # one line for the log: why this many


def cgroup_cpu_quota(cpu_max: str) -> float | None:
    """CPUs allowed by a cgroup v2 ``cpu.max`` line (``"200000 100000"`` -> 2.0);
    None when unlimited (``"max 100000"``) or unreadable."""
    parts = cpu_max.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        quota, period = int(parts[0]), int(parts[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def usable_cpus(cpu_max_file: Path = _CGROUP_CPU_MAX) -> int:
    """Cores this process may use: its CPU affinity, capped by the cgroup quota."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        quota = cgroup_cpu_quota(cpu_max_file.read_text(encoding="ascii"))
    except OSError:
        quota = None
    limit = max(1, cores or 1)
    return limit if quota is None else max(1, min(limit, math.ceil(quota)))


def plan_workers(settings: Settings, *, cpus: int) -> WorkerPlan:
    """Apply the rule above (an explicit count the limits cannot follow never gets
    here: the settings refuse it, :meth:`Settings._workers_share_limits`)."""
    wanted = settings.gateway.workers
    if wanted != "auto":
        return WorkerPlan(wanted, f"gateway.workers: {wanted}")
    if settings.limits.enabled and settings.limits.store == "memory" and cpus > 1:
        return WorkerPlan(1, "gateway.workers auto: 1, as limits.store is memory")
    if settings.database_url.startswith("sqlite") and cpus > 1:
        if not settings.audit.spool.enabled:
            return WorkerPlan(1, "gateway.workers auto: 1, as the database is SQLite")
        # Spooled, a request writes no SQL: only the drainers' large batches queue.
        return WorkerPlan(cpus, f"gateway.workers auto: {cpus} (usable cores; SQLite, spooled)")
    return WorkerPlan(cpus, f"gateway.workers auto: {cpus} (usable cores)")
