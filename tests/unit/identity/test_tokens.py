"""Pure token checks: header, algorithm allow-list, signature, registered claims."""

from __future__ import annotations

import base64
import json

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from appliance.identity.tokens import (
    InvalidToken,
    TokenRules,
    check_algorithm,
    check_claims,
    parse_token,
    verify_signature,
)

ISS = "https://sso.example.test/realms/appliance"
RULES = TokenRules(issuer=ISS, audiences=frozenset({"appliance-gateway"}), leeway_s=30)
NOW = 1_800_000_000.0
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def claims(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "iss": ISS, "aud": "appliance-gateway", "sub": "u1", "exp": NOW + 300,
        "iat": NOW - 1, "typ": "Bearer",
    }  # fmt: skip
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def test_valid_claims_pass() -> None:
    check_claims(claims(), RULES, NOW)
    check_claims(claims(aud=["account", "appliance-gateway"]), RULES, NOW)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"iss": ISS + "x"}, "issuer"),
        ({"iss": None}, "issuer"),
        ({"aud": "account"}, "audience"),
        ({"aud": ["account"]}, "audience"),
        ({"aud": None}, "audience"),
        ({"aud": 7}, "audience"),
        ({"exp": None}, "no exp"),
        ({"exp": "soon"}, "not a number"),
        ({"exp": True}, "not a number"),
        ({"exp": NOW - 30}, "expired"),
        ({"nbf": NOW + 31}, "not yet valid"),
        ({"iat": NOW + 31}, "future"),
        ({"typ": "ID"}, "not an access token"),
        ({"typ": "Refresh"}, "not an access token"),
        ({"sub": None}, "sub"),
        ({"sub": ""}, "sub"),
    ],
)
def test_bad_claims_are_refused(overrides: dict[str, object], reason: str) -> None:
    with pytest.raises(InvalidToken, match=reason):
        check_claims(claims(**overrides), RULES, NOW)


def test_leeway_is_inclusive_of_small_skew() -> None:
    check_claims(claims(exp=NOW - 29, nbf=NOW + 29, iat=NOW + 29), RULES, NOW)


def test_authorized_party_allow_list() -> None:
    rules = TokenRules(issuer=ISS, audiences=frozenset({"appliance-gateway"}),
                       authorized_parties=frozenset({"appliance-web"}))  # fmt: skip
    check_claims(claims(azp="appliance-web"), rules, NOW)
    for azp in ("other-client", None):
        with pytest.raises(InvalidToken, match="client"):
            check_claims(claims(azp=azp), rules, NOW)


@pytest.mark.parametrize("algorithms", [("HS256",), ("none",), (), ("RS256", "HS512")])
def test_rules_refuse_symmetric_or_empty_algorithm_lists(algorithms: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="asymmetric"):
        TokenRules(issuer=ISS, audiences=frozenset({"a"}), algorithms=algorithms)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "token",
    ["", "a", "a.b", "a.b.c.d", "!!!.e30.sig", "e30.!!!.sig", f"{_b64(b'[]')}.e30.c2ln",
     f"{_b64(b'not json')}.e30.c2ln", "eyJhbGciOiJSUzI1NiJ9=.e30.c2ln", "x" * 20000],
)  # fmt: skip
def test_malformed_tokens(token: str) -> None:
    with pytest.raises(InvalidToken, match="malformed"):
        parse_token(token)


def test_crit_header_is_refused() -> None:
    head = _b64(json.dumps({"alg": "RS256", "crit": ["x"]}).encode())
    with pytest.raises(InvalidToken, match="critical"):
        parse_token(f"{head}.e30.c2ln")


@pytest.mark.parametrize("alg", ["none", "None", "HS256", "HS384", "HS512", "RS1", 5, None])
def test_algorithm_allow_list(alg: object) -> None:
    head = _b64(json.dumps({"alg": alg, "kid": "k"}).encode())
    with pytest.raises(InvalidToken, match="algorithm"):
        check_algorithm(parse_token(f"{head}.e30.c2ln"), ("RS256", "HS256"))


def test_signature_round_trip_and_tamper() -> None:
    token = jwt.encode(claims(), RSA_KEY, algorithm="RS256", headers={"kid": "k"})
    parsed = parse_token(token)
    alg = check_algorithm(parsed, ("RS256",))
    verify_signature(parsed, alg, RSA_KEY.public_key())
    assert parsed.claims()["sub"] == "u1"
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    with pytest.raises(InvalidToken, match="signature"):
        verify_signature(parsed, alg, other)
    head, _body, sig = token.split(".")
    forged = parse_token(f"{head}.{_b64(json.dumps(claims(sub='root')).encode())}.{sig}")
    with pytest.raises(InvalidToken, match="signature"):
        verify_signature(forged, alg, RSA_KEY.public_key())


def test_es256_and_wrong_key_type() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    token = jwt.encode(claims(), key, algorithm="ES256", headers={"kid": "e"})
    parsed = parse_token(token)
    verify_signature(parsed, check_algorithm(parsed, ("ES256",)), key.public_key())
    with pytest.raises(InvalidToken, match="signature"):
        verify_signature(parsed, "ES256", RSA_KEY.public_key())


def test_non_object_payload_is_refused_after_signature() -> None:
    token = jwt.api_jws.encode(b"[1, 2]", RSA_KEY, algorithm="RS256")
    with pytest.raises(InvalidToken, match="not a JSON object"):
        parse_token(token).claims()
