"""appliance/keys/provider.py and signing.py: master keys and the signing key."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import httpx
import pytest

from appliance.errors import ConfigurationError, VerificationError
from appliance.keys.provider import FileKeyProvider, KeyProvider, VaultTransitKeyProvider
from appliance.keys.signing import load_signer


def test_file_provider_creates_a_private_key_file_and_wraps(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "master"
    provider = FileKeyProvider.from_file(path)
    assert isinstance(provider, KeyProvider)
    assert path.stat().st_mode & 0o777 == 0o600
    wrapped = provider.wrap(b"k" * 32, context=b"alice")
    assert provider.unwrap(wrapped, context=b"alice") == b"k" * 32
    # Same file, same key id; the wrapped key only opens with its own context.
    again = FileKeyProvider.from_file(path)
    assert again.key_id == provider.key_id
    assert again.unwrap(wrapped, context=b"alice") == b"k" * 32
    with pytest.raises(VerificationError):
        again.unwrap(wrapped, context=b"bob")
    with pytest.raises(VerificationError):
        FileKeyProvider(os.urandom(32)).unwrap(wrapped, context=b"alice")


def test_file_provider_refuses_a_readable_key_file(tmp_path: Path) -> None:
    path = tmp_path / "master"
    FileKeyProvider.from_file(path)
    path.chmod(0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        FileKeyProvider.from_file(path)


def test_file_provider_missing_file_without_create(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not found"):
        FileKeyProvider.from_file(tmp_path / "absent", create=False)


def test_file_provider_refuses_wrong_key_length() -> None:
    with pytest.raises(ConfigurationError):
        FileKeyProvider(b"short")


def fake_vault() -> tuple[httpx.MockTransport, list[dict[str, object]]]:
    """Transit encrypt/decrypt: 'ciphertext' is vault:v1:base64(aad|plaintext)."""
    calls: list[dict[str, object]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        calls.append({"path": request.url.path, "token": request.headers["x-vault-token"]})
        if request.url.path == "/v1/transit/encrypt/audit":
            sealed = body["associated_data"] + "|" + body["plaintext"]
            text = "vault:v1:" + base64.b64encode(sealed.encode()).decode()
            return httpx.Response(200, json={"data": {"ciphertext": text}})
        if request.url.path == "/v1/transit/decrypt/audit":
            aad, _, plaintext = base64.b64decode(body["ciphertext"][9:]).decode().partition("|")
            if aad != body["associated_data"]:
                return httpx.Response(
                    400, json={"errors": ["cipher: message authentication failed"]}
                )
            return httpx.Response(200, json={"data": {"plaintext": plaintext}})
        return httpx.Response(404)

    return httpx.MockTransport(handler), calls


def test_vault_transit_provider_wraps_with_associated_data() -> None:
    transport, calls = fake_vault()
    provider = VaultTransitKeyProvider("http://vault:8200/", "tok", "audit", transport=transport)
    wrapped = provider.wrap(b"k" * 32, context=b"alice")
    assert wrapped.startswith(b"vault:v1:")
    assert provider.unwrap(wrapped, context=b"alice") == b"k" * 32
    with pytest.raises(VerificationError):
        provider.unwrap(wrapped, context=b"bob")
    assert calls[0] == {"path": "/v1/transit/encrypt/audit", "token": "tok"}
    assert provider.key_id == "vault-transit:audit"


def test_vault_unreachable_is_an_os_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    provider = VaultTransitKeyProvider(
        "http://vault:8200", "tok", "audit", transport=httpx.MockTransport(refuse)
    )
    with pytest.raises(OSError, match="encrypt failed"):
        provider.wrap(b"k" * 32, context=b"x")


def test_signing_key_file(tmp_path: Path) -> None:
    path = tmp_path / "signing"
    signer = load_signer(path, "example.com/log")
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_signer(path, "example.com/log").key_id == signer.key_id
    with pytest.raises(ConfigurationError, match="origin"):
        load_signer(path, "other/log")
    path.chmod(0o640)
    with pytest.raises(ConfigurationError, match="readable"):
        load_signer(path, "example.com/log")
