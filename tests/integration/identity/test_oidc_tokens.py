"""Keycloak access tokens at the gateway, against the real (npm oidc-provider) realm:
every bad token is refused before any engine sees it, and the refusal is audited."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from appliance.audit.records import AuditEvent, Outcome
from tests.integration.identity.conftest import OidcGateway
from tests.oidc.provider import KIDS, KeycloakRealm, new_rsa_key
from tests.support.requests import CHAT, auth, chat_body


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(realm: KeycloakRealm, header: dict[str, object]) -> str:
    """A token whose header and payload look right, with no or a forged signature."""
    payload = json.loads(base64.urlsafe_b64decode(realm.mint().split(".")[1] + "=="))
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}."


def hs256_with_public_key(realm: KeycloakRealm) -> str:
    """The algorithm-confusion attack: HMAC keyed with the realm's *public* key."""
    kid = realm.published[0]
    pem = realm.keys[kid].public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = realm.mint().split(".")[1]
    signature = hmac.new(pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(signature)}"


def tampered(token: str) -> str:
    head, _, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    claims["realm_access"] = {"roles": ["appliance-admin"]}
    return f"{head}.{b64(json.dumps(claims).encode())}.{signature}"


NOW = int(time.time())
BAD_TOKENS: dict[str, tuple[Callable[[KeycloakRealm], str], str]] = {
    "expired": (lambda r: r.mint({"exp": NOW - 3600, "iat": NOW - 3900}), "expired"),
    "not yet valid": (lambda r: r.mint({"nbf": NOW + 3600}), "not yet valid"),
    "issued in the future": (lambda r: r.mint({"iat": NOW + 3600}), "future"),
    "wrong issuer": (lambda r: r.mint({"iss": "http://127.0.0.1:9/realms/other"}), "issuer"),
    "wrong audience (minted)": (lambda r: r.mint({"aud": "account"}), "audience"),
    "wrong audience (from the provider)": (
        lambda r: r.service_token(resource="urn:other-api"),
        "audience",
    ),
    "no audience": (lambda r: r.mint(drop=("aud",)), "audience"),
    "no exp": (lambda r: r.mint(drop=("exp",)), "exp"),
    "no sub": (lambda r: r.mint(drop=("sub",)), "sub"),
    "refresh token, not access": (lambda r: r.mint({"typ": "Refresh"}), "not an access token"),
    "signed by another key, realm kid": (
        lambda r: r.mint(key=new_rsa_key(), kid=r.published[0]),
        "signature",
    ),
    "signed by another key, unknown kid": (
        lambda r: r.mint(key=new_rsa_key(), kid="attacker-key"),
        "unknown",
    ),
    "alg none": (lambda r: unsigned(r, {"alg": "none", "kid": r.published[0]}), "algorithm"),
    "alg None, mixed case": (lambda r: unsigned(r, {"alg": "None"}), "algorithm"),
    "HS256 with the realm's public key": (hs256_with_public_key, "algorithm"),
    "RS256 without signature": (
        lambda r: unsigned(r, {"alg": "RS256", "kid": r.published[0]}),
        "not signed",
    ),
    "crit header": (lambda r: r.mint(headers={"crit": ["exp"], "exp": 1}), "critical"),
    "no kid": (lambda r: unsigned(r, {"alg": "RS256"}) + "c2ln", "kid"),
    "malformed: garbage parts": (lambda r: "abc.def.ghi", "malformed"),
    "malformed: two parts": (lambda r: r.mint().rsplit(".", 1)[0] + "x", "malformed"),
    "tampered payload": (lambda r: tampered(r.mint()), "signature"),
    "opaque token that is not active": (lambda r: "not-a-real-opaque-token", "not active"),
}


def assert_refused(gateway: OidcGateway, response, status: int, code: str) -> str:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    records = gateway.records(response)
    assert len(records) == 1, records
    assert records[0].event is AuditEvent.DENIED
    assert records[0].outcome is Outcome.DENIED
    assert records[0].status_code == status
    assert code in (records[0].denial_reason or "")
    return str(error["message"])


@pytest.mark.parametrize("case", list(BAD_TOKENS))
def test_bad_token_is_401_audited_and_never_reaches_the_engine(gateway, case) -> None:
    build, reason = BAD_TOKENS[case]
    token = build(gateway.realm)
    before = len(gateway.fake.requests)
    response = gateway.client.post(CHAT, json=chat_body(), headers=auth(token))
    message = assert_refused(gateway, response, 401, "invalid_token")
    assert reason in message
    assert response.headers["www-authenticate"] == "Bearer"
    assert len(gateway.fake.requests) == before


def test_real_token_expired_by_the_clock_is_refused(gateway) -> None:
    token = gateway.realm.service_token()
    assert gateway.client.post(CHAT, json=chat_body(), headers=auth(token)).status_code == 200
    gateway.shift_clock(timedelta(seconds=300 + 31))  # TTL 300 s, leeway 30 s
    response = gateway.client.post(CHAT, json=chat_body(), headers=auth(token))
    assert "expired" in assert_refused(gateway, response, 401, "invalid_token")


def test_real_token_before_its_iat_is_refused(gateway) -> None:
    token = gateway.realm.service_token()
    gateway.shift_clock(timedelta(seconds=-120))
    response = gateway.client.post(CHAT, json=chat_body(), headers=auth(token))
    assert "future" in assert_refused(gateway, response, 401, "invalid_token")


def test_small_clock_skew_is_tolerated(gateway) -> None:
    token = gateway.realm.service_token()
    gateway.shift_clock(timedelta(seconds=-20))
    assert gateway.client.post(CHAT, json=chat_body(), headers=auth(token)).status_code == 200


@pytest.mark.parametrize(
    ("who", "model", "role"),
    [
        ("bob", "fake-model", "appliance-user"),  # a person with no appliance role
        ("svc-norole", "fake-model", "appliance-user"),  # a service account with none
        ("erin", "fake-model", "appliance-user"),  # has a role, but not for this model
    ],
)
def test_missing_role_is_403_naming_the_role_and_audited(gateway, who, model, role) -> None:
    realm = gateway.realm
    if who.startswith("svc-"):
        token = realm.service_token(who, f"{who}-secret")
    else:
        token = realm.user_tokens(who)["access_token"]
    before = len(gateway.fake.requests)
    response = gateway.client.post(CHAT, json=chat_body(model), headers=auth(token))
    message = assert_refused(gateway, response, 403, "model_not_allowed")
    assert role in message
    assert "fake-small" not in message and "fake-slow" not in message  # no other models
    assert gateway.records(response)[0].username == who or who.startswith("svc-")
    assert len(gateway.fake.requests) == before


def test_unknown_model_without_role_looks_the_same_as_a_forbidden_one(gateway) -> None:
    token = gateway.realm.user_tokens("erin")["access_token"]
    exists = gateway.client.post(CHAT, json=chat_body("fake-slow"), headers=auth(token))
    absent = gateway.client.post(CHAT, json=chat_body("fake-nothing"), headers=auth(token))
    assert exists.status_code == absent.status_code == 403
    assert exists.json()["error"]["message"].replace("fake-slow", "X") == absent.json()["error"][
        "message"
    ].replace("fake-nothing", "X")


def test_service_account_token_passes(gateway) -> None:
    token = gateway.realm.service_token()
    response = gateway.client.post(CHAT, json=chat_body(), headers=auth(token))
    assert response.status_code == 200, response.text
    records = gateway.records(response)
    assert [r.event for r in records] == [AuditEvent.REQUEST, AuditEvent.COMPLETION]
    assert records[0].subject == "svc-batch"
    assert records[0].username == "service-account-svc-batch"
    assert records[0].auth_method == "oidc"


def test_user_token_passes_and_models_are_filtered_by_role(gateway) -> None:
    alice = gateway.realm.user_tokens("alice")["access_token"]
    response = gateway.client.post(CHAT, json=chat_body(), headers=auth(alice))
    assert response.status_code == 200, response.text
    assert gateway.records(response)[0].username == "alice"
    erin = gateway.realm.user_tokens("erin")["access_token"]
    models = gateway.client.get("/v1/models", headers=auth(erin)).json()["data"]
    assert models == []  # fake-small* is not served here
    models = gateway.client.get("/v1/models", headers=auth(alice)).json()["data"]
    assert {m["id"] for m in models} >= {"fake-model"}


def test_opaque_token_is_introspected_and_cached(gateway) -> None:
    token = gateway.realm.service_token(resource="urn:appliance-gateway:opaque")
    assert "." not in token
    for _ in range(3):
        response = gateway.client.post(CHAT, json=chat_body(), headers=auth(token))
        assert response.status_code == 200, response.text
    introspection = gateway.services.identity.introspection  # type: ignore[union-attr]
    assert introspection is not None and introspection.calls == 1


def test_api_keys_keep_working_beside_oidc(gateway) -> None:
    key = gateway.api_key(["appliance-user"])
    response = gateway.client.post(CHAT, json=chat_body(), headers=auth(key))
    assert response.status_code == 200
    assert gateway.records(response)[0].auth_method == "api_key"


def test_key_rotation_without_restart(make_gateway, fresh_keys) -> None:
    """A new realm key is accepted at once (unknown kid -> one refetch); a removed key
    stops working once the cached key set is refreshed."""
    gateway = make_gateway(jwks_max_age_s=60, jwks_min_refetch_interval_s=10)
    realm = fresh_keys
    jwks = gateway.services.identity.jwks  # type: ignore[union-attr]
    old_token = realm.service_token()
    assert gateway.client.post(CHAT, json=chat_body(), headers=auth(old_token)).status_code == 200
    assert jwks.fetches == 1

    realm.publish(KIDS[1], KIDS[0])  # new active key, old one passive
    gateway.shift_clock(timedelta(seconds=11))  # past the refetch rate limit
    new_token = realm.service_token()
    assert json.loads(base64.urlsafe_b64decode(new_token.split(".")[0] + "=="))["kid"] == KIDS[1]
    assert gateway.client.post(CHAT, json=chat_body(), headers=auth(new_token)).status_code == 200
    assert jwks.fetches == 2
    assert gateway.client.post(CHAT, json=chat_body(), headers=auth(old_token)).status_code == 200

    realm.publish(KIDS[1])  # old key deleted in Keycloak
    assert gateway.client.post(CHAT, json=chat_body(), headers=auth(old_token)).status_code == 200
    gateway.shift_clock(timedelta(seconds=11 + 61))  # cached set is now stale: refreshed
    response = gateway.client.post(CHAT, json=chat_body(), headers=auth(old_token))
    assert "unknown" in assert_refused(gateway, response, 401, "invalid_token")
    assert gateway.client.post(CHAT, json=chat_body(), headers=auth(new_token)).status_code == 200


def test_unknown_kid_flood_refetches_at_most_once_per_interval(make_gateway) -> None:
    gateway = make_gateway(jwks_min_refetch_interval_s=30)
    realm = gateway.realm
    ok = realm.service_token()
    assert gateway.client.post(CHAT, json=chat_body(), headers=auth(ok)).status_code == 200
    jwks = gateway.services.identity.jwks  # type: ignore[union-attr]
    fetches = jwks.fetches
    for index in range(5):
        forged = realm.mint(key=new_rsa_key(), kid=f"forged-{index}")
        assert gateway.client.post(CHAT, json=chat_body(), headers=auth(forged)).status_code == 401
    assert jwks.fetches - fetches <= 1


def test_unreachable_keycloak_without_cached_keys_is_503_not_401(make_gateway) -> None:
    gateway = make_gateway(server_url="http://127.0.0.1:9", http_timeout_s=1)
    token = gateway.realm.service_token()
    before = len(gateway.fake.requests)
    response = gateway.client.post(CHAT, json=chat_body(), headers=auth(token))
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "identity_unavailable"
    assert len(gateway.records(response)) == 1
    assert len(gateway.fake.requests) == before
