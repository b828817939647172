"""Secrets and keys: private-key blocks, cloud and SaaS tokens, API keys, JWTs.

Token formats are the vendors' published ones (AWS IAM unique-ID prefixes, GitHub's
token prefixes, Slack's ``xox?-`` tokens, OpenAI/Anthropic ``sk-`` and Stripe
``sk_live_`` keys, RFC 7519 JWTs). A string of a token's shape is treated as the token:
a near-miss costs a placeholder, a miss costs a leaked credential.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

from appliance.egress.detectors.base import RegexDetector, Span
from appliance.egress.levels import Classification

__all__ = [
    "AWS_ACCESS_KEY_ID",
    "GENERIC_API_KEY",
    "GITHUB_TOKEN",
    "JWT",
    "SLACK_TOKEN",
    "PemPrivateKeyDetector",
    "is_jwt",
    "looks_like_api_key",
    "secret_detectors",
]

_RESTRICTED = Classification.RESTRICTED
# Token boundaries (regular expressions, not secrets).
_TOKEN_START = r"(?<![A-Za-z0-9_-])"  # noqa: S105
_TOKEN_END = r"(?![A-Za-z0-9_-])"  # noqa: S105

# -- PEM private keys (RFC 7468) -------------------------------------------------------

_PEM_MARKER = re.compile(
    r"-----(?P<edge>BEGIN|END) (?:[A-Z0-9]{1,20} ){0,3}PRIVATE KEY(?: BLOCK)?-----"
)
# Lines that may follow an unterminated BEGIN: base64, RFC 1421 headers, blank lines.
_PEM_BODY = re.compile(
    r"(?:\r?\n(?:[A-Za-z0-9+/=]{1,128}|[A-Za-z-]{1,32}: [^\r\n]{0,256})?(?=\r?\n|\Z))*+"
)


@dataclass(frozen=True, slots=True)
class PemPrivateKeyDetector:
    """``-----BEGIN ... PRIVATE KEY-----`` through its END line. A block pasted without
    its END line still counts: the span runs over the base64 lines that follow."""

    name: str = "pem_private_key"
    label: str = "PRIVATE_KEY"
    level: Classification = _RESTRICTED

    def find(self, text: str) -> Iterator[Span]:
        open_at: int | None = None
        open_end = 0
        for marker in _PEM_MARKER.finditer(text):
            if marker.group("edge") == "BEGIN":
                if open_at is not None:
                    yield open_at, _body_end(text, open_end)
                open_at, open_end = marker.start(), marker.end()
            elif open_at is not None:
                yield open_at, marker.end()
                open_at = None
        if open_at is not None:
            yield open_at, _body_end(text, open_end)


def _body_end(text: str, header_end: int) -> int:
    body = _PEM_BODY.match(text, header_end)
    end = body.end() if body else header_end
    while end > header_end and text[end - 1] in "\r\n":
        end -= 1
    return end


# -- Tokens with a vendor prefix -------------------------------------------------------

AWS_ACCESS_KEY_ID = RegexDetector(
    name="aws_access_key_id",
    label="SECRET",
    level=_RESTRICTED,
    # IAM unique-ID prefixes of access keys: AKIA (long-term), ASIA (STS), and the rarer ones.
    pattern=re.compile(
        r"(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}(?![A-Za-z0-9])"
    ),
)

GITHUB_TOKEN = RegexDetector(
    name="github_token",
    label="SECRET",
    level=_RESTRICTED,
    # ghp_ (classic PAT), gho_ (OAuth), ghu_/ghs_ (app user/server), ghr_ (refresh), and
    # fine-grained github_pat_ tokens.
    pattern=re.compile(
        _TOKEN_START
        + r"(?:gh[pousr]_[A-Za-z0-9]{36,251}+|github_pat_[A-Za-z0-9_]{82,251}+)"
        + _TOKEN_END
    ),
)

SLACK_TOKEN = RegexDetector(
    name="slack_token",
    label="SECRET",
    level=_RESTRICTED,
    pattern=re.compile(_TOKEN_START + r"xox[baprs]-[A-Za-z0-9-]{10,250}+" + _TOKEN_END),
    validate=lambda token: any(ch.isdigit() for ch in token) and token.count("-") >= 2,
)

_KEY_RUN = re.compile(r"[A-Za-z0-9]+")


def looks_like_api_key(value: str) -> bool:
    """A ``sk-``/``sk_live_`` key has a long random run: at least 16 letters and digits
    in a row, mixing both (so ``sk-learn-tutorial-for-beginners`` is prose, not a key)."""
    body = value.split("_", 2)[-1] if value[2] == "_" else value[3:]
    run = max(_KEY_RUN.findall(body), key=len, default="")
    return len(run) >= 16 and any(c.isdigit() for c in run) and any(c.isalpha() for c in run)


GENERIC_API_KEY = RegexDetector(
    name="api_key",
    label="SECRET",
    level=_RESTRICTED,
    # OpenAI (sk-, sk-proj-), Anthropic (sk-ant-...), Stripe secret/restricted keys.
    pattern=re.compile(
        _TOKEN_START
        + r"(?:sk-[A-Za-z0-9_-]{20,256}+|[sr]k_(?:live|test)_[A-Za-z0-9]{20,256}+)"
        + _TOKEN_END
    ),
    validate=looks_like_api_key,
)


# -- JSON Web Tokens (RFC 7519 / RFC 7515 compact serialisation) -------------------------


def is_jwt(value: str) -> bool:
    """Three base64url parts whose first decodes to a JSON object with an ``alg``."""
    header = value.split(".", 1)[0]
    try:
        decoded = base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))
        parsed = json.loads(decoded)
    except (binascii.Error, ValueError):  # JSONDecodeError and UnicodeDecodeError too
        return False
    return isinstance(parsed, dict) and isinstance(parsed.get("alg"), str)


JWT = RegexDetector(
    name="jwt",
    label="SECRET",
    level=_RESTRICTED,
    # The header is a JSON object, so its base64url starts with "e" ("{" = 0b011110..).
    pattern=re.compile(
        _TOKEN_START
        + r"e[A-Za-z0-9_-]{9,4096}+\.[A-Za-z0-9_-]{2,65536}+\.[A-Za-z0-9_-]{0,4096}+"
        + _TOKEN_END
    ),
    validate=is_jwt,
)


def secret_detectors() -> tuple[PemPrivateKeyDetector | RegexDetector, ...]:
    return (
        PemPrivateKeyDetector(),
        AWS_ACCESS_KEY_ID,
        GITHUB_TOKEN,
        SLACK_TOKEN,
        GENERIC_API_KEY,
        JWT,
    )
