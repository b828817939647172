"""Secrets generated once and kept in the data directory (embedded default)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

__all__ = ["load_or_create_secret"]


def _read(path: Path) -> str | None:
    try:
        value = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    return value or None


def load_or_create_secret(
    path: Path, *, nbytes: int = 32, factory: Callable[[], str] | None = None
) -> str:
    """Return the secret stored at ``path``, creating it (mode 0600) on first use.

    The file appears atomically with its content (written aside, then hard-linked into
    place), so a concurrent reader never sees it empty and two processes starting
    together agree on one secret. An empty file (left by a crash of an older version)
    is never taken as a secret: vLLM treats an empty key as "no authentication".
    ``factory`` makes the value (default: ``nbytes`` random bytes, URL-safe base64).
    """
    existing = _read(path)
    if existing:
        return existing
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    value = factory() if factory else secrets.token_urlsafe(nbytes)
    staging = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(value + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(staging, path)
        except FileExistsError:
            current = _read(path)
            if current:
                return current
            os.replace(staging, path)  # the existing file was empty
        return value
    finally:
        staging.unlink(missing_ok=True)
