"""Pure checks on a compact JWS access token: header, signature, claims.

No I/O and no clock: the caller passes the key and the time. The steps follow
RFC 7519 §7.2 (validating a JWT) and RFC 8725 (JWT best current practices):

1. Split the compact serialization into three base64url parts (RFC 7515 §7.1).
2. Decode the JOSE header; refuse ``crit`` (RFC 7515 §4.1.11) and any ``alg`` that is
   not on the configured asymmetric allow-list: never ``none``, never HMAC (RFC 8725
   §3.1-3.2; HMAC with a public key as the secret is the classic confusion attack).
3. Verify the signature with a key whose type matches the algorithm.
4. Check ``iss``, ``aud``, ``exp``/``nbf``/``iat`` with leeway, ``azp``, ``typ``
   (RFC 9068 §4 for access tokens; Keycloak marks access tokens ``typ: Bearer``).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from jwt.algorithms import get_default_algorithms
from jwt.exceptions import InvalidKeyError

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "DEFAULT_ALGORITHMS",
    "InvalidToken",
    "ParsedToken",
    "TokenRules",
    "check_algorithm",
    "check_algorithm_list",
    "check_claims",
    "key_type_for",
    "looks_like_jwt",
    "parse_token",
    "verify_signature",
]

# Families by key type (RFC 7518 §3.1, RFC 8037 §3.1).
_KEY_TYPES = {
    "RS256": "RSA", "RS384": "RSA", "RS512": "RSA",
    "PS256": "RSA", "PS384": "RSA", "PS512": "RSA",
    "ES256": "EC", "ES384": "EC", "ES512": "EC",
    "EdDSA": "OKP",
}  # fmt: skip
ASYMMETRIC_ALGORITHMS = frozenset(_KEY_TYPES)
DEFAULT_ALGORITHMS = ("RS256",)
_ALGORITHMS = get_default_algorithms()
_MAX_TOKEN_BYTES = 16 * 1024
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


class InvalidToken(Exception):
    """The token is not acceptable; ``reason`` is safe to show to the caller."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class TokenRules:
    """What an acceptable access token looks like for this resource server."""

    issuer: str
    audiences: frozenset[str]
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    leeway_s: float = 30.0
    # Clients allowed to have obtained the token (``azp``); None: any client.
    authorized_parties: frozenset[str] | None = None
    # Values of the ``typ`` claim that mark an access token; None: do not check.
    token_types: frozenset[str] | None = frozenset({"Bearer"})

    def __post_init__(self) -> None:
        check_algorithm_list(self.algorithms)
        if not self.audiences:
            raise ValueError("at least one audience is required")


def check_algorithm_list(algorithms: Collection[str]) -> None:
    refused = [name for name in algorithms if name not in ASYMMETRIC_ALGORITHMS]
    if refused or not algorithms:
        raise ValueError(
            f"token algorithms must be asymmetric ({', '.join(sorted(ASYMMETRIC_ALGORITHMS))}); "
            f"refused: {', '.join(refused) or '(empty list)'}"
        )


@dataclass(frozen=True)
class ParsedToken:
    header: Mapping[str, Any]
    signing_input: bytes = field(repr=False)
    signature: bytes = field(repr=False)
    payload: bytes = field(repr=False)

    @property
    def alg(self) -> str:
        return str(self.header.get("alg"))

    @property
    def kid(self) -> str | None:
        kid = self.header.get("kid")
        return kid if isinstance(kid, str) else None

    def claims(self) -> dict[str, Any]:
        """The payload as a JSON object; call only after the signature verified."""
        try:
            claims = json.loads(self.payload)
        except ValueError as exc:
            raise InvalidToken("malformed token: payload is not JSON") from exc
        if not isinstance(claims, dict):
            raise InvalidToken("malformed token: payload is not a JSON object")
        return claims


def looks_like_jwt(token: str) -> bool:
    """Compact JWS shape (three dot-separated parts); anything else may be opaque."""
    return token.count(".") == 2


def _b64decode(part: str) -> bytes:
    if not _BASE64URL.fullmatch(part):
        raise ValueError("not unpadded base64url")
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def parse_token(token: str) -> ParsedToken:
    """Step 1-2: split and decode; no trust in anything yet."""
    if len(token) > _MAX_TOKEN_BYTES:
        raise InvalidToken("malformed token: too long")
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidToken("malformed token: not a compact JWS")
    header_part, payload_part, signature_part = parts
    try:
        header = json.loads(_b64decode(header_part))
        payload = _b64decode(payload_part)
        signature = _b64decode(signature_part) if signature_part else b""
    except (ValueError, binascii.Error) as exc:
        raise InvalidToken("malformed token: bad base64url or JSON") from exc
    if not isinstance(header, dict):
        raise InvalidToken("malformed token: header is not a JSON object")
    if "crit" in header:
        raise InvalidToken("unsupported token: critical header extensions")
    return ParsedToken(
        header=header,
        signing_input=f"{header_part}.{payload_part}".encode("ascii"),
        signature=signature,
        payload=payload,
    )


def check_algorithm(parsed: ParsedToken, allowed: Collection[str]) -> str:
    """Step 2: the header's alg must be an allowed asymmetric algorithm."""
    alg = parsed.header.get("alg")
    if not isinstance(alg, str) or alg not in allowed or alg not in ASYMMETRIC_ALGORITHMS:
        raise InvalidToken(f"token algorithm {str(alg)[:20]!r} is not accepted")
    if not parsed.signature:
        raise InvalidToken("token is not signed")
    return alg


def key_type_for(alg: str) -> str:
    return _KEY_TYPES[alg]


def verify_signature(parsed: ParsedToken, alg: str, key: Any) -> None:
    """Step 3: the signature over header.payload with ``key`` (a cryptography public key
    whose type the caller matched to ``alg``)."""
    try:
        valid = _ALGORITHMS[alg].verify(parsed.signing_input, key, parsed.signature)
    except (InvalidKeyError, TypeError, ValueError, AttributeError) as exc:
        raise InvalidToken("token signature is invalid") from exc
    if not valid:
        raise InvalidToken("token signature is invalid")


def _numeric(claims: Mapping[str, Any], name: str, *, required: bool) -> float | None:
    value = claims.get(name)
    if value is None:
        if required:
            raise InvalidToken(f"token has no {name} claim")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidToken(f"token claim {name} is not a number")
    return float(value)


def check_claims(claims: Mapping[str, Any], rules: TokenRules, now: float) -> None:
    """Step 4: RFC 7519 §4.1 registered claims against ``rules`` at time ``now``
    (seconds since the epoch)."""
    if claims.get("iss") != rules.issuer:
        raise InvalidToken("token issuer is not accepted")
    audience = claims.get("aud")
    audiences = [audience] if isinstance(audience, str) else audience
    if not isinstance(audiences, list) or not rules.audiences.intersection(
        a for a in audiences if isinstance(a, str)
    ):
        raise InvalidToken("token audience is not accepted")
    expires = _numeric(claims, "exp", required=True)
    assert expires is not None
    if now >= expires + rules.leeway_s:
        raise InvalidToken("token has expired")
    not_before = _numeric(claims, "nbf", required=False)
    if not_before is not None and now + rules.leeway_s < not_before:
        raise InvalidToken("token is not yet valid")
    issued = _numeric(claims, "iat", required=False)
    if issued is not None and now + rules.leeway_s < issued:
        raise InvalidToken("token is issued in the future")
    if rules.authorized_parties is not None and claims.get("azp") not in rules.authorized_parties:
        raise InvalidToken("token was obtained by a client that is not accepted")
    if rules.token_types is not None and "typ" in claims and claims["typ"] not in rules.token_types:
        raise InvalidToken("token is not an access token")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise InvalidToken("token has no sub claim")
