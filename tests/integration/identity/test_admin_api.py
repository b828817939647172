"""Admin API for API keys: only appliance-admin, only roles the admin holds."""

from __future__ import annotations

from appliance.audit.records import AuditEvent, Outcome
from tests.support.requests import CHAT, auth, chat_body

KEYS = "/admin/api-keys"


def test_admin_creates_lists_and_revokes_keys(gateway) -> None:
    admin = auth(gateway.api_key(["appliance-admin", "appliance-user"]))
    created = gateway.client.post(
        KEYS, json={"name": "ci", "owner": "team-ci", "expires_in_days": 30}, headers=admin
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["roles"] == ["appliance-user"] and body["api_key"].startswith("sk-appl-")
    assert body["expires_at"] is not None

    chat = gateway.client.post(CHAT, json=chat_body(), headers=auth(body["api_key"]))
    assert chat.status_code == 200

    listed = gateway.client.get(KEYS, headers=admin).json()["data"]
    assert body["key_id"] in {k["key_id"] for k in listed}
    assert all("api_key" not in k and "key_hash" not in k for k in listed)

    revoked = gateway.client.delete(f"{KEYS}/{body['key_id']}", headers=admin)
    assert revoked.json() == {"key_id": body["key_id"], "revoked": True}
    refused = gateway.client.post(CHAT, json=chat_body(), headers=auth(body["api_key"]))
    assert refused.status_code == 401
    again = gateway.client.delete(f"{KEYS}/{body['key_id']}", headers=admin)
    assert again.status_code == 404 and again.json()["error"]["code"] == "api_key_not_found"


def test_keycloak_admin_can_use_the_admin_api(gateway) -> None:
    token = gateway.realm.user_tokens("dave")["access_token"]
    response = gateway.client.get(KEYS, headers=auth(token))
    assert response.status_code == 200, response.text


def test_non_admins_are_refused(gateway) -> None:
    for credential in (
        gateway.api_key(["appliance-user"]),
        gateway.realm.user_tokens("carol")["access_token"],  # auditor is not admin
        gateway.realm.service_token(),
    ):
        response = gateway.client.get(KEYS, headers=auth(credential))
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "role_required"
        assert "appliance-admin" in response.json()["error"]["message"]
        (denied,) = gateway.records(response)  # every refusal is on record
        assert denied.event is AuditEvent.DENIED and denied.status_code == 403
        assert denied.subject is not None and denied.path == KEYS
    anonymous = gateway.client.get(KEYS)
    assert anonymous.status_code == 401
    assert gateway.records(anonymous)[0].outcome is Outcome.DENIED


def test_admin_cannot_grant_roles_they_do_not_hold(gateway) -> None:
    admin = auth(gateway.api_key(["appliance-admin"]))
    response = gateway.client.post(
        KEYS, json={"name": "x", "owner": "y", "roles": ["appliance-auditor"]}, headers=admin
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "role_not_grantable"
    assert "appliance-auditor" in response.json()["error"]["message"]
    assert not [r for r in gateway.audit.records if r.event is AuditEvent.API_KEY_CREATE]


def test_creating_and_revoking_keys_is_on_record_without_the_secret(gateway) -> None:
    admin_secret = gateway.api_key(["appliance-admin", "appliance-user"])
    created = gateway.client.post(
        KEYS, json={"name": "etl", "owner": "data-team"}, headers=auth(admin_secret)
    )
    body = created.json()
    (act,) = gateway.records(created)
    assert act.event is AuditEvent.API_KEY_CREATE and act.outcome is Outcome.OK
    assert act.params["key_id"] == body["key_id"] and act.params["key_owner"] == "data-team"
    assert act.params["key_roles"] == ["appliance-user"] and act.username == "tester"
    assert body["api_key"] not in repr(act)

    revoked = gateway.client.delete(f"{KEYS}/{body['key_id']}", headers=auth(admin_secret))
    (act,) = gateway.records(revoked)
    assert act.event is AuditEvent.API_KEY_REVOKE and act.params["key_id"] == body["key_id"]


def test_an_admin_cannot_revoke_the_key_they_call_with(gateway) -> None:
    secret = gateway.api_key(["appliance-admin"])
    key_id = gateway.keys.find(secret).key_id
    response = gateway.client.delete(f"{KEYS}/{key_id}", headers=auth(secret))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "cannot_revoke_own_key"
    assert gateway.client.get(KEYS, headers=auth(secret)).status_code == 200


def test_invalid_body_is_400(gateway) -> None:
    admin = auth(gateway.api_key(["appliance-admin"]))
    response = gateway.client.post(KEYS, json={"name": "", "owner": "y"}, headers=admin)
    assert response.status_code == 400
