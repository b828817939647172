"""What the client receives is what vLLM sent, chunk for chunk; what the audit says."""

from __future__ import annotations

from unittest.mock import ANY

import httpx

from appliance.audit.records import AuditEvent, Outcome
from appliance.gateway import create_app
from tests.support.receipts import without_receipt
from tests.support.requests import CHAT, auth, chat_body
from tests.support.servers import ServerThread


def test_non_streaming_answer_is_passed_through_byte_for_byte(client, harness) -> None:
    response = client.post(CHAT, json=chat_body(temperature=0), headers=auth(harness.user_key))
    assert response.status_code == 200
    assert response.content == harness.fake.sent[-1]
    records = harness.records(response.headers["x-request-id"])
    assert [r.event for r in records] == [AuditEvent.REQUEST, AuditEvent.COMPLETION]
    done = records[1]
    assert (done.outcome, done.status_code) == (Outcome.OK, 200)
    assert (done.prompt_tokens, done.completion_tokens) == (11, 7)
    assert done.params == {"temperature": 0, "answer_commitment": ANY}  # salted: receipts
    assert done.latency_ms is not None and done.latency_ms >= 0
    # The request went upstream with the engine's secret and our request id.
    assert harness.fake.headers[-1]["authorization"] == "Bearer engine-shared-secret"
    assert harness.fake.headers[-1]["x-request-id"] == response.headers["x-request-id"]


def test_completions_route_is_proxied_too(client, harness) -> None:
    response = client.post(
        "/v1/completions",
        json={"model": "fake-model", "prompt": "The capital of France is"},
        headers=auth(harness.user_key),
    )
    assert response.status_code == 200
    assert harness.fake.requests[-1]["prompt"] == "The capital of France is"


def test_stream_with_client_usage_is_identical_to_upstream(client, harness) -> None:
    body = chat_body(stream=True, stream_options={"include_usage": True})
    with client.stream("POST", CHAT, json=body, headers=auth(harness.user_key)) as response:
        received, _receipt = without_receipt(b"".join(response.iter_raw()))
    assert response.headers["content-type"].startswith("text/event-stream")
    assert received == harness.fake.sent[-1]
    assert harness.fake.requests[-1]["stream_options"] == {"include_usage": True}
    record = harness.records(response.headers["x-request-id"])[-1]
    assert (record.prompt_tokens, record.completion_tokens) == (11, 7)


def test_stream_without_usage_hides_the_usage_chunk_the_gateway_asked_for(client, harness) -> None:
    with client.stream(
        "POST", CHAT, json=chat_body(stream=True), headers=auth(harness.user_key)
    ) as response:
        received, _receipt = without_receipt(b"".join(response.iter_raw()))
    upstream = harness.fake.sent[-1]
    # The gateway asked the engine for usage ...
    assert harness.fake.requests[-1]["stream_options"] == {"include_usage": True}
    assert b'"usage"' in upstream
    # ... and the client gets the stream it asked for: everything but that chunk.
    events = [e + b"\n\n" for e in upstream.split(b"\n\n") if e]
    expected = b"".join(e for e in events if b'"usage"' not in e)
    assert received == expected
    assert received.endswith(b"data: [DONE]\n\n")
    record = harness.records(response.headers["x-request-id"])[-1]
    assert (record.outcome, record.completion_tokens) == (Outcome.OK, 7)


def test_engine_dying_mid_stream_ends_with_an_error_event(client, harness) -> None:
    with client.stream(
        "POST", CHAT, json=chat_body("fake-die", stream=True), headers=auth(harness.user_key)
    ) as response:
        received = b"".join(response.iter_raw())
    assert response.status_code == 200  # the stream had started
    assert b'"content": "The"' in received
    assert b'"code": "engine_error"' in received
    assert received.endswith(b"data: [DONE]\n\n")
    assert b"engine died" not in received
    record = harness.records(response.headers["x-request-id"])[-1]
    assert record.event is AuditEvent.COMPLETION
    assert (record.outcome, record.status_code) == (Outcome.UPSTREAM_ERROR, 502)


def test_client_disconnect_cancels_the_upstream_request(harness, wait_until) -> None:
    app = create_app(harness.settings, secrets=harness.secrets)
    cancelled_before = harness.fake.slow_cancelled
    with ServerThread(app) as gateway, httpx.Client(base_url=gateway.url, timeout=10) as http:
        with http.stream(
            "POST", CHAT, json=chat_body("fake-slow", stream=True),
            headers=auth(harness.user_key),
        ) as response:  # fmt: skip
            request_id = response.headers["x-request-id"]
            first = next(response.iter_raw())
            assert b"tick" in first
        # Leaving the block closed the connection mid-stream.
        assert wait_until(lambda: harness.fake.slow_cancelled > cancelled_before)
        assert wait_until(lambda: len(harness.records(request_id)) == 2)
    assert harness.fake.slow_finished == 0
    record = harness.records(request_id)[-1]
    assert record.outcome is Outcome.CLIENT_DISCONNECTED


def test_chunks_are_forwarded_as_they_arrive(harness) -> None:
    """The first chunk reaches the client while the engine is still streaming."""
    app = create_app(harness.settings, secrets=harness.secrets)
    with ServerThread(app) as gateway, httpx.Client(base_url=gateway.url, timeout=10) as http:
        with http.stream(
            "POST", CHAT, json=chat_body("fake-slow", stream=True),
            headers=auth(harness.user_key),
        ) as response:  # fmt: skip
            chunks = response.iter_raw()
            next(chunks)
            next(chunks)
            # The fake streams 600 chunks; it cannot have finished if we already
            # hold two, unless the gateway buffered the whole answer.
            assert harness.fake.slow_finished == 0


def test_models_lists_only_what_the_key_may_use(client, harness) -> None:
    everything = client.get("/v1/models", headers=auth(harness.user_key)).json()
    assert {m["id"] for m in everything["data"]} >= {"fake-model", "fake-slow"}
    limited = harness.key(models=["fake-model"])
    body = client.get("/v1/models", headers=auth(limited)).json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["fake-model"]


def test_models_answer_the_openai_model_shape(client, harness) -> None:
    """The openai client's Model type: id, object, created (int), owned_by."""
    from openai.types import Model

    body = client.get("/v1/models", headers=auth(harness.user_key)).json()
    assert body["data"]
    for entry in body["data"]:
        model = Model.model_validate(entry, strict=True)  # extra keys (parent) are allowed
        assert model.object == "model" and model.created > 1_700_000_000


def test_health_endpoints_answer_without_a_key(client, harness, tmp_path, fake_vllm) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    # One configured engine (fake-absent) is down, so the gateway is not ready.
    assert ready.status_code == 503
    assert ready.json()["engines"]["fake-absent"] == "unavailable"
    assert ready.json()["engines"]["fake-model"] == "ok"
    assert ready.json()["database"] == "ok"
    # One entry per replica (docs/gateway.md, Readiness).
    health = {r["model"]: r["healthy"] for r in ready.json()["replicas"]}
    assert health["fake-absent"] is False and health["fake-model"] is True


def test_readyz_is_ready_when_every_engine_is_healthy(harness, fake_vllm) -> None:
    from fastapi.testclient import TestClient

    settings = harness.settings.model_copy(
        update={
            "gateway": harness.settings.gateway.model_copy(
                update={"upstreams": [harness.settings.gateway.upstreams[0]]}
            )
        }
    )
    with TestClient(create_app(settings, secrets=harness.secrets)) as client:
        assert client.get("/readyz").json()["status"] == "ready"


def test_request_id_is_echoed_or_generated(client, harness) -> None:
    mine = client.get("/healthz", headers={"X-Request-ID": "abcdef123456"})
    assert mine.headers["x-request-id"] == "abcdef123456"
    bad = client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    assert bad.headers["x-request-id"] != "bad id\twith spaces"
    assert len(bad.headers["x-request-id"]) == 32
