"""Browser sessions signed in with an API key live only as long as the key, and every
sign-in, sign-out and refusal on the way is in the audit log."""

from __future__ import annotations

import re
from datetime import timedelta

from fastapi.testclient import TestClient

from appliance.audit.records import AuditEvent, Outcome
from appliance.gateway.services import utc_now
from tests.integration.identity.conftest import OidcGateway
from tests.support.requests import CHAT, auth, chat_body

KEYS = "/admin/api-keys"


def _form_token(page_html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page_html)
    assert found, page_html[:500]
    return found.group(1)


def ui_sign_in(client: TestClient, secret: str) -> str:
    """Sign in at /ui/login like a browser; the session's CSRF token for the API."""
    form = client.get("/ui/login")
    answer = client.post(
        "/ui/login",
        data={"csrf_token": _form_token(form.text), "api_key": secret, "next": "/ui/chat"},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    chat = client.get("/ui/chat")
    assert chat.status_code == 200, chat.text
    meta = re.search(r'name="csrf-token" content="([^"]+)"', chat.text)
    assert meta, chat.text[:500]
    return meta.group(1)


def _events(gateway: OidcGateway, event: AuditEvent) -> list:  # type: ignore[type-arg]
    return [r for r in gateway.audit.records if r.event is event]


def _browser_chat(client: TestClient, csrf: str) -> int:
    return client.post(CHAT, json=chat_body(), headers={"x-csrf-token": csrf}).status_code


def test_revoking_a_key_ends_its_browser_sessions_at_once(gateway: OidcGateway) -> None:
    admin = auth(gateway.api_key(["appliance-admin", "appliance-user"]))
    created = gateway.client.post(KEYS, json={"name": "b", "owner": "bob"}, headers=admin)
    key_id, secret = created.json()["key_id"], created.json()["api_key"]
    with TestClient(gateway.app) as browser:
        csrf = ui_sign_in(browser, secret)
        assert _browser_chat(browser, csrf) == 200
        engine_calls = len(gateway.fake.requests)

        assert gateway.client.delete(f"{KEYS}/{key_id}", headers=admin).status_code == 200
        assert _browser_chat(browser, csrf) == 401
        assert len(gateway.fake.requests) == engine_calls  # the engine saw nothing
        page = browser.get("/ui/chat", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"].startswith("/ui/login")


def test_a_key_revoked_elsewhere_ends_the_session_within_the_cache_time(
    gateway: OidcGateway,
) -> None:
    secret = gateway.api_key(["appliance-user"])
    key_id = gateway.keys.find(secret).key_id  # type: ignore[union-attr]
    with TestClient(gateway.app) as browser:
        csrf = ui_sign_in(browser, secret)
        # Revoked by the CLI or another replica: this process's caches know nothing.
        gateway.keys.revoke(key_id, now=utc_now())
        recheck = gateway.services.settings.auth.api_key_cache_s
        gateway.shift_clock(timedelta(seconds=recheck + 1))
        assert _browser_chat(browser, csrf) == 401


def test_a_session_ends_when_its_key_expires(gateway: OidcGateway) -> None:
    now = utc_now()
    secret = gateway.keys.create(
        name="short", owner="ann", roles=["appliance-user"], models=None, now=now,
        expires_at=now + timedelta(hours=1),
    ).secret  # fmt: skip
    with TestClient(gateway.app) as browser:
        csrf = ui_sign_in(browser, secret)
        gateway.shift_clock(timedelta(minutes=30))
        assert _browser_chat(browser, csrf) == 200
        gateway.shift_clock(timedelta(hours=1, seconds=1))
        assert _browser_chat(browser, csrf) == 401


def test_sign_ins_and_sign_outs_are_audited(gateway: OidcGateway) -> None:
    secret = gateway.api_key(["appliance-user"])
    with TestClient(gateway.app) as browser:
        form = browser.get("/ui/login")
        wrong = browser.post(
            "/ui/login",
            data={"csrf_token": _form_token(form.text), "api_key": "sk-appl-wrong", "next": "/"},
        )
        assert wrong.status_code == 400
        failed = _events(gateway, AuditEvent.SIGN_IN)
        assert len(failed) == 1 and failed[0].outcome is Outcome.DENIED
        assert failed[0].subject is None and "not valid" in (failed[0].denial_reason or "")
        assert "sk-appl-wrong" not in repr(failed[0])  # never the presented secret

        csrf = ui_sign_in(browser, secret)
        signed_in = _events(gateway, AuditEvent.SIGN_IN)[1]
        assert signed_in.outcome is Outcome.OK and signed_in.params == {"method": "api_key"}
        assert signed_in.key_id == gateway.keys.find(secret).key_id  # type: ignore[union-attr]

        out = browser.post("/ui/logout", data={"csrf_token": csrf}, follow_redirects=False)
        assert out.status_code == 303
        (signed_out,) = _events(gateway, AuditEvent.SIGN_OUT)
        assert signed_out.subject == signed_in.subject


def test_a_csrf_refusal_is_recorded_with_the_sessions_user(gateway: OidcGateway) -> None:
    secret = gateway.api_key(["appliance-user"])
    with TestClient(gateway.app) as browser:
        ui_sign_in(browser, secret)
        refused = browser.post(CHAT, json=chat_body())  # no x-csrf-token
        assert refused.status_code == 403
        (denied,) = gateway.records(refused)
        assert denied.event is AuditEvent.DENIED and denied.username == "tester"
        assert denied.denial_reason is not None and "csrf" in denied.denial_reason


def test_static_assets_are_never_sniffed(gateway: OidcGateway) -> None:
    for asset in ("common.js", "app.css"):
        response = gateway.client.get(f"/ui/static/{asset}")
        assert response.status_code == 200
        assert response.headers["x-content-type-options"] == "nosniff"


def test_sessions_are_shared_by_gateway_processes_and_survive_a_restart(make_gateway) -> None:  # type: ignore[no-untyped-def]
    """Two gateways on one database (two workers, or a restart): a browser signed in at
    one is signed in at the other, and a revoke at either ends it at both at once."""
    first: OidcGateway = make_gateway()
    second: OidcGateway = make_gateway()
    admin = auth(first.api_key(["appliance-admin", "appliance-user"]))
    created = first.client.post(KEYS, json={"name": "w", "owner": "walt"}, headers=admin)
    key_id, secret = created.json()["key_id"], created.json()["api_key"]
    with TestClient(first.app) as browser:
        csrf = ui_sign_in(browser, secret)
        cookie = browser.cookies.get("appliance_session")
    assert cookie
    with TestClient(second.app, cookies={"appliance_session": cookie}) as elsewhere:
        assert _browser_chat(elsewhere, csrf) == 200  # the other process knows the session
        assert second.client.delete(f"{KEYS}/{key_id}", headers=admin).status_code == 200
    with TestClient(first.app, cookies={"appliance_session": cookie}) as again:
        assert _browser_chat(again, csrf) == 401  # ended everywhere at once
