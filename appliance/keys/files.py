"""Secrets generated once and kept in the data directory (embedded default)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = ["load_or_create_secret"]


def load_or_create_secret(path: Path, *, nbytes: int = 32) -> str:
    """Return the secret stored at ``path``, creating it (mode 0600) on first use.

    Creation uses O_EXCL so two processes starting together agree on one secret.
    """
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    value = secrets.token_urlsafe(nbytes)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="ascii").strip()
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(value + "\n")
    return value
