"""appliance/egress/detectors/secrets.py against tests/vectors/egress/secrets.json, and
PEM private-key blocks, whole and truncated."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from appliance.egress.detectors.secrets import (
    is_jwt,
    looks_like_api_key,
    secret_detectors,
)
from appliance.egress.levels import Classification

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parents[3] / "vectors" / "egress" / "secrets.json").read_text(encoding="utf-8")
)
DETECTORS = {d.name: d for d in secret_detectors()}
KINDS = ["aws_access_key_id", "github_token", "slack_token", "api_key", "jwt"]
VALID = [(kind, value) for kind in KINDS for value in VECTORS[kind]["valid"]]
INVALID = [(kind, v["value"], v["mutation"]) for kind in KINDS for v in VECTORS[kind]["invalid"]]

PEM = """-----BEGIN RSA PRIVATE KEY-----
MIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu
KUpRKfFLfRYC9AIKjbJTWit+CqvjWYzvQwECAwEAAQJAIJLixBy2qpFoS4DSmoEm
-----END RSA PRIVATE KEY-----"""


def found(kind: str, text: str) -> list[str]:
    return [text[start:end] for start, end in DETECTORS[kind].find(text)]


def test_all_secrets_are_restricted() -> None:
    assert {d.level for d in secret_detectors()} == {Classification.RESTRICTED}


@pytest.mark.parametrize(("kind", "value"), VALID, ids=[f"{k}:{v[:16]}" for k, v in VALID])
def test_valid(kind: str, value: str) -> None:
    assert found(kind, f"token={value}\n") == [value]
    assert found(kind, f'{{"key": "{value}"}}') == [value]


@pytest.mark.parametrize(
    ("kind", "value", "mutation"), INVALID, ids=[f"{k}:{m}" for k, _, m in INVALID]
)
def test_invalid(kind: str, value: str, mutation: str) -> None:
    assert found(kind, f"token={value}\n") == []


def test_pem_block_whole() -> None:
    text = f"here is my key:\n{PEM}\nplease fix"
    assert found("pem_private_key", text) == [PEM]


@pytest.mark.parametrize(
    "header",
    [
        "-----BEGIN PRIVATE KEY-----",
        "-----BEGIN EC PRIVATE KEY-----",
        "-----BEGIN OPENSSH PRIVATE KEY-----",
        "-----BEGIN ENCRYPTED PRIVATE KEY-----",
        "-----BEGIN PGP PRIVATE KEY BLOCK-----",
    ],
)
def test_pem_kinds(header: str) -> None:
    footer = header.replace("BEGIN", "END")
    block = f"{header}\nQUJD\n{footer}"
    assert found("pem_private_key", f"x {block} y") == [block]


def test_pem_without_end_covers_the_base64_lines_only() -> None:
    truncated = (
        "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\n"
        "MIIBOgIBAAJBAKj34GkxFhD9\nKUpRKfFLfRYC9AIK"
    )
    assert found("pem_private_key", truncated + "\n\nwhat is wrong with it?") == [truncated]


def test_pem_two_blocks_and_public_keys() -> None:
    text = f"{PEM}\n-----BEGIN PUBLIC KEY-----\nQUJD\n-----END PUBLIC KEY-----\n{PEM}"
    assert found("pem_private_key", text) == [PEM, PEM]


def test_jwt_header_rules() -> None:
    assert is_jwt(VECTORS["jwt"]["valid"][0])
    assert not is_jwt("e30.e30.")  # {} has no alg
    assert not is_jwt("eyJhbGciOjF9.e30.")  # alg must be a string
    assert not is_jwt("e!!!.e30.")


def test_api_key_heuristic() -> None:
    assert looks_like_api_key("sk-" + "aB3" * 10)
    assert not looks_like_api_key("sk-" + "a" * 30)
    assert not looks_like_api_key("sk_live_" + "1" * 30)


def test_prose_mentioning_prefixes_is_not_a_secret() -> None:
    text = "Use the sk- prefix, an AKIA key id, ghp_ tokens and xoxb- tokens; see risk-based."
    for kind in KINDS:
        assert found(kind, text) == []
