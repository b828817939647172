"""What `appliance doctor` says about the audit spool: on, where, and whether that
directory is local and writable (a spool on shared storage would let two hosts' processes
take each other's slots, and a network filesystem's fdatasync is not the local one)."""

from __future__ import annotations

import os
from pathlib import Path

from appliance.config import Settings

__all__ = ["NETWORK_FILESYSTEMS", "filesystem_of", "spool_findings"]

NETWORK_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "glusterfs", "fuse.sshfs", "9p", "lustre"}
)


def filesystem_of(path: Path, mounts: str) -> str | None:
    """The type of the filesystem ``path`` is on, from ``/proc/mounts``-shaped text."""
    best: tuple[int, str] | None = None
    target = str(path)
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) > best[0]):
            best = (len(point), fields[2])
    return best[1] if best is not None else None


def spool_findings(settings: Settings, mounts: str | None = None) -> list[tuple[str, str]]:
    """(level, message) lines; ``mounts``: /proc/mounts text (read when None)."""
    spool = settings.audit.spool
    if not spool.enabled:
        return [("ok", "audit spool: off (records committed to the database per batch)")]
    directory = spool.directory or settings.data_dir / "audit-spool"
    found = [("ok", f"audit spool: on, in {directory} (max {spool.max_bytes} bytes unsealed)")]
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not os.access(existing, os.W_OK):
        found.append(("fail", f"audit spool: {existing} is not writable by this user"))
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text(encoding="utf-8", errors="replace")
        except OSError:
            mounts = ""
    kind = filesystem_of(existing.resolve(), mounts)
    if kind in NETWORK_FILESYSTEMS:
        found.append((
            "fail",
            f"audit spool: {directory} is on {kind}, a network filesystem: keep the spool "
            "on a local disk of each host or pod",
        ))  # fmt: skip
    return found
