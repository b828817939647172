"""Master-key providers: wrap and unwrap the audit log's per-subject keys.

The master key never leaves its provider's process boundary in the Vault case, and
never reaches the database in either case. ``context`` is bound to each wrapped key
as associated data, so a wrapped key copied to another subject does not unwrap.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from pathlib import Path
from typing import Protocol, runtime_checkable

import httpx
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from appliance.errors import ConfigurationError, VerificationError
from appliance.keys.files import load_or_create_secret

__all__ = ["FileKeyProvider", "KeyProvider", "VaultTransitKeyProvider"]


@runtime_checkable
class KeyProvider(Protocol):
    @property
    def key_id(self) -> str:
        """Names the master key (not secret), stored beside what it wrapped."""
        ...

    def wrap(self, key: bytes, *, context: bytes) -> bytes: ...

    def unwrap(self, wrapped: bytes, *, context: bytes) -> bytes:
        """Raise VerificationError when ``wrapped`` was not made by this key."""
        ...


def _new_master_key() -> str:
    return base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()


class FileKeyProvider:
    """A 256-bit master key in a file that only its owner may read (embedded default).

    Wrapping is AES-256-GCM with a random 96-bit nonce and the context as associated
    data: ``nonce || ciphertext || tag``."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ConfigurationError("the audit master key must be 32 bytes")
        self._aead = AESGCM(key)
        self._key_id = "file:" + hashlib.sha256(b"appliance-audit-master\n" + key).hexdigest()[:16]

    @classmethod
    def from_file(cls, path: Path, *, create: bool = True) -> FileKeyProvider:
        if create:
            load_or_create_secret(path, factory=_new_master_key)
        try:
            mode = path.stat().st_mode
        except FileNotFoundError as exc:
            raise ConfigurationError(f"audit master key file not found: {path}") from exc
        if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigurationError(
                f"audit master key file {path} is readable by others; chmod 600 it"
            )
        try:
            key = base64.b64decode(path.read_text(encoding="ascii").strip(), validate=True)
        except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"audit master key file {path} is not base64") from exc
        return cls(key)

    @property
    def key_id(self) -> str:
        return self._key_id

    def wrap(self, key: bytes, *, context: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, key, context)

    def unwrap(self, wrapped: bytes, *, context: bytes) -> bytes:
        try:
            return self._aead.decrypt(wrapped[:12], wrapped[12:], context)
        except InvalidTag as exc:
            raise VerificationError("wrapped key does not open with this master key") from exc

    def __repr__(self) -> str:
        return f"FileKeyProvider(key_id={self._key_id!r})"


class VaultTransitKeyProvider:
    """HashiCorp Vault (or OpenBao) transit engine as the master key (production).

    Uses ``POST /v1/<mount>/encrypt/<key>`` and ``/decrypt/<key>`` with the context as
    ``associated_data`` (an ``aes256-gcm96`` key). Speaks HTTP with httpx, so no extra
    client library is needed; ``transport`` lets tests fake Vault."""

    def __init__(
        self,
        url: str,
        token: str,
        key_name: str,
        *,
        mount: str = "transit",
        timeout_s: float = 5.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._key_name = key_name
        self._client = httpx.Client(
            base_url=f"{url.rstrip('/')}/v1/{mount.strip('/')}",
            headers={"X-Vault-Token": token},
            timeout=timeout_s,
            transport=transport,
        )

    @property
    def key_id(self) -> str:
        return f"vault-transit:{self._key_name}"

    def _call(self, operation: str, body: dict[str, str]) -> dict[str, object]:
        try:
            response = self._client.post(f"/{operation}/{self._key_name}", json=body)
        except httpx.HTTPError as exc:
            raise OSError(f"Vault transit {operation} failed: {type(exc).__name__}") from exc
        if response.status_code != 200:
            if operation == "decrypt" and response.status_code == 400:
                raise VerificationError("Vault refused to unwrap the key")
            raise OSError(f"Vault transit {operation} answered {response.status_code}")
        data = response.json().get("data")
        if not isinstance(data, dict):
            raise OSError(f"Vault transit {operation} sent no data")
        return data

    def wrap(self, key: bytes, *, context: bytes) -> bytes:
        data = self._call(
            "encrypt",
            {
                "plaintext": base64.b64encode(key).decode(),
                "associated_data": base64.b64encode(context).decode(),
            },
        )
        return str(data["ciphertext"]).encode()

    def unwrap(self, wrapped: bytes, *, context: bytes) -> bytes:
        data = self._call(
            "decrypt",
            {
                "ciphertext": wrapped.decode(),
                "associated_data": base64.b64encode(context).decode(),
            },
        )
        return base64.b64decode(str(data["plaintext"]))

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return f"VaultTransitKeyProvider(key={self._key_name!r})"
