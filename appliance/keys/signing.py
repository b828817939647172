"""The audit log's checkpoint signing key: an Ed25519 signed-note key in a 0600 file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from appliance.audit.checkpoint import NoteSigner
from appliance.errors import ConfigurationError
from appliance.keys.files import load_or_create_secret

__all__ = ["load_signer"]


def load_signer(path: Path, name: str, *, create: bool = True) -> NoteSigner:
    """Read (or create on first use) the signer key; its name must be the log origin."""
    if create:
        load_or_create_secret(path, factory=lambda: NoteSigner.generate(name).signer_key())
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii")
    except FileNotFoundError as exc:
        raise ConfigurationError(f"audit signing key file not found: {path}") from exc
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigurationError(f"audit signing key file {path} is readable by others")
    signer = NoteSigner.from_signer_key(text)
    if signer.name != name:
        raise ConfigurationError(
            f"audit signing key {path} is named {signer.name!r}, but the log origin is "
            f"{name!r}; set audit.origin to match or move the key aside"
        )
    return signer
