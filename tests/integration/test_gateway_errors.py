"""Every error status the gateway promises, each OpenAI-shaped and audited."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from appliance.audit.records import AuditEvent, Outcome
from appliance.gateway import create_app
from appliance.gateway.services import utc_now
from tests.integration.conftest import GatewayHarness
from tests.support.requests import CHAT, auth, chat_body


def assert_openai_error(response, status: int, code: str) -> dict[str, object]:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == code
    assert "Traceback" not in response.text
    return body["error"]


def only_record(harness: GatewayHarness, response) -> object:  # type: ignore[no-untyped-def]
    records = harness.records(response.headers["x-request-id"])
    assert len(records) == 1, records
    return records[0]


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "missing_api_key"),
        ({"Authorization": "Basic abc"}, "missing_api_key"),
        ({"Authorization": "Bearer sk-appl-not-a-real-key"}, "invalid_api_key"),
        ({"Authorization": "Bearer something-else"}, "invalid_api_key"),
    ],
)
def test_missing_or_bad_key_is_401_and_audited(client, harness, headers, code) -> None:
    sent_before = len(harness.fake.requests)  # the fake engine is shared by the session
    response = client.post(CHAT, json=chat_body(), headers=headers)
    error = assert_openai_error(response, 401, code)
    assert error["type"] == "authentication_error"
    assert response.headers["www-authenticate"] == "Bearer"
    record = only_record(harness, response)
    assert record.event is AuditEvent.DENIED
    assert record.outcome is Outcome.DENIED
    assert record.status_code == 401
    assert record.subject is None
    assert len(harness.fake.requests) == sent_before  # the engine never saw it


def test_key_revoked_through_the_admin_api_is_401_at_once(client, harness) -> None:
    created = harness.keys.create(
        name="t", owner="o", roles=["appliance-user"], models=None, now=utc_now()
    )
    admin = harness.key(roles=["appliance-admin", "appliance-user"])
    assert client.post(CHAT, json=chat_body(), headers=auth(created.secret)).status_code == 200
    revoked = client.delete(f"/admin/api-keys/{created.record.key_id}", headers=auth(admin))
    assert revoked.status_code == 200
    response = client.post(CHAT, json=chat_body(), headers=auth(created.secret))
    assert_openai_error(response, 401, "invalid_api_key")


def test_key_revoked_by_another_process_is_401_without_the_cache(harness) -> None:
    """Revoked in the database behind the gateway's back (the CLI, another replica):
    with `auth.api_key_cache_s: 0` the very next request is refused."""
    settings = harness.settings.model_copy(
        update={"auth": harness.settings.auth.model_copy(update={"api_key_cache_s": 0})}
    )
    created = harness.keys.create(
        name="t", owner="o", roles=["appliance-user"], models=None, now=utc_now()
    )
    with TestClient(create_app(settings, secrets=harness.secrets)) as uncached:
        served = uncached.post(CHAT, json=chat_body(), headers=auth(created.secret))
        assert served.status_code == 200
        harness.keys.revoke(created.record.key_id, now=utc_now())
        response = uncached.post(CHAT, json=chat_body(), headers=auth(created.secret))
    assert_openai_error(response, 401, "invalid_api_key")


def test_model_outside_key_globs_is_403_and_audited_with_principal(client, harness) -> None:
    key = harness.key(models=["other-*"])
    sent_before = len(harness.fake.requests)
    response = client.post(CHAT, json=chat_body(), headers=auth(key))
    error = assert_openai_error(response, 403, "model_not_allowed")
    assert error["type"] == "permission_error"
    record = only_record(harness, response)
    assert record.outcome is Outcome.DENIED
    assert record.subject is not None and record.subject.startswith("apikey:")
    assert record.model == "fake-model"
    assert len(harness.fake.requests) == sent_before  # no engine saw it


def test_role_without_grant_is_403(client, harness) -> None:
    key = harness.key(roles=["appliance-auditor"])
    response = client.post(CHAT, json=chat_body(), headers=auth(key))
    assert_openai_error(response, 403, "model_not_allowed")


def test_unknown_model_is_404(client, harness) -> None:
    response = client.post(CHAT, json=chat_body("no-such-model"), headers=auth(harness.user_key))
    assert_openai_error(response, 404, "model_not_found")
    assert only_record(harness, response).outcome is Outcome.INVALID


@pytest.mark.parametrize(
    ("content", "param"),
    [
        (b"{not json", None),
        (b"[1, 2]", None),
        (json.dumps({"messages": [{"role": "user", "content": "x"}]}).encode(), "model"),
        (json.dumps(chat_body(temperature=5)).encode(), "temperature"),
        (json.dumps({"model": "fake-model", "messages": []}).encode(), "messages"),
        (json.dumps(chat_body(max_tokens=0)).encode(), "max_tokens"),
        (json.dumps(chat_body(stream="yes please")).encode(), "stream"),
    ],
)
def test_malformed_or_invalid_body_is_400(client, harness, content, param) -> None:
    headers = {**auth(harness.user_key), "Content-Type": "application/json"}
    response = client.post(CHAT, content=content, headers=headers)
    error = assert_openai_error(response, 400, "invalid_request")
    assert error["param"] == param
    assert only_record(harness, response).event is AuditEvent.DENIED


def test_invalid_utf8_is_400(client, harness) -> None:
    headers = {**auth(harness.user_key), "Content-Type": "application/json"}
    response = client.post(CHAT, content=b'{"model": "\xff\xfe"}', headers=headers)
    error = assert_openai_error(response, 400, "invalid_request")
    assert "UTF-8" in str(error["message"])


def test_wrong_content_type_is_415(client, harness) -> None:
    headers = {**auth(harness.user_key), "Content-Type": "text/plain"}
    response = client.post(CHAT, content=json.dumps(chat_body()), headers=headers)
    assert_openai_error(response, 415, "unsupported_media_type")


def test_oversized_body_is_413(client, harness) -> None:
    big = chat_body(messages=[{"role": "user", "content": "x" * 10_000}])
    response = client.post(CHAT, json=big, headers=auth(harness.user_key))
    assert_openai_error(response, 413, "request_too_large")
    assert only_record(harness, response).status_code == 413


def test_oversized_chunked_body_without_length_is_413(client, harness) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        yield b'{"model": "fake-model", "messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}]}'

    headers = {**auth(harness.user_key), "Content-Type": "application/json"}
    response = client.post(CHAT, content=chunks(), headers=headers)
    assert_openai_error(response, 413, "request_too_large")


def test_engine_500_is_502_without_its_details(client, harness) -> None:
    response = client.post(CHAT, json=chat_body("fake-500"), headers=auth(harness.user_key))
    error = assert_openai_error(response, 502, "engine_error")
    assert "CUDA" not in str(error["message"])
    records = harness.records(response.headers["x-request-id"])
    assert [r.event for r in records] == [AuditEvent.REQUEST, AuditEvent.COMPLETION]
    assert records[1].outcome is Outcome.UPSTREAM_ERROR


def test_engine_400_message_reaches_the_client(client, harness) -> None:
    response = client.post(CHAT, json=chat_body("fake-400"), headers=auth(harness.user_key))
    error = assert_openai_error(response, 400, "invalid_request")
    assert "maximum context length" in str(error["message"])


def test_engine_garbage_is_502(client, harness) -> None:
    response = client.post(CHAT, json=chat_body("fake-garbage"), headers=auth(harness.user_key))
    assert_openai_error(response, 502, "engine_error")


def test_absent_engine_is_503(client, harness) -> None:
    response = client.post(CHAT, json=chat_body("fake-absent"), headers=auth(harness.user_key))
    assert_openai_error(response, 503, "engine_unavailable")
    records = harness.records(response.headers["x-request-id"])
    assert records[-1].status_code == 503


def test_engine_timeout_is_504(client, harness) -> None:
    response = client.post(CHAT, json=chat_body("fake-hang"), headers=auth(harness.user_key))
    assert_openai_error(response, 504, "engine_timeout")


def test_unexpected_error_is_500_without_internal_text(client, harness, monkeypatch) -> None:
    services = client.app.state.services

    async def explode(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("secret internal detail /etc/appliance")

    monkeypatch.setattr(services.upstream, "open_stream", explode)
    response = client.post(CHAT, json=chat_body(), headers=auth(harness.user_key))
    assert response.status_code == 500
    assert "secret internal detail" not in response.text
    assert response.headers["x-request-id"] in response.json()["error"]["message"]


def test_unknown_route_and_method_are_openai_shaped(client, harness) -> None:
    assert_openai_error(client.get("/v1/nothing", headers=auth(harness.user_key)), 404, "not_found")
    assert_openai_error(client.get(CHAT, headers=auth(harness.user_key)), 405, "method_not_allowed")


def test_audit_failure_refuses_with_503_and_engine_never_called(harness, monkeypatch) -> None:
    from appliance.audit.sink import MemoryAuditSink
    from appliance.gateway import create_app

    sink = MemoryAuditSink()
    sink.fail = True
    app = create_app(harness.settings, secrets=harness.secrets, audit_sink=sink)
    before = len(harness.fake.requests)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post(CHAT, json=chat_body(), headers=auth(harness.user_key))
        assert_openai_error(response, 503, "audit_unavailable")
        # Denials too: a refused request that cannot be recorded is also a 503.
        denied = client.post(CHAT, json=chat_body(), headers={})
        assert_openai_error(denied, 503, "audit_unavailable")
    assert len(harness.fake.requests) == before
