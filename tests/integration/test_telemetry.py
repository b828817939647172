"""Spans (in-memory exporter and a real OTLP/HTTP receiver), Prometheus /metrics, JSON
logs, and the rule that no prompt or answer text appears in any of them."""

from __future__ import annotations

import json
import logging
import time

from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from appliance.config import Settings
from appliance.gateway import create_app
from appliance.telemetry import JsonFormatter
from tests.support.fake_vllm import TOKENS
from tests.support.requests import CHAT, auth, chat_body
from tests.support.servers import ServerThread

SECRET_PROMPT = "Tell me the launch codes zebra-quartz-4411"
ANSWER = "".join(TOKENS)
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _settings(harness, **telemetry: object) -> Settings:  # type: ignore[no-untyped-def]
    data = harness.settings.model_dump()
    data["telemetry"].update(telemetry)
    data["limits"]["roles"] = {"appliance-user": {"rpm": 1000}}
    return Settings.model_validate(data)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def _traffic(client: TestClient, harness) -> list:  # type: ignore[no-untyped-def]
    body = chat_body(messages=[{"role": "user", "content": SECRET_PROMPT}], max_tokens=20)
    headers = {**auth(harness.user_key), "traceparent": TRACEPARENT}
    return [
        client.post(CHAT, json=body, headers=headers),
        client.post(CHAT, json={**body, "stream": True}, headers=headers),
        client.post(CHAT, json=chat_body("fake-500"), headers=auth(harness.user_key)),
        client.post(CHAT, json=body, headers=auth("sk-appl-wrong")),
    ]


def test_spans_metrics_and_logs_carry_no_content(harness, caplog) -> None:
    exporter = InMemorySpanExporter()
    app = create_app(_settings(harness), secrets=harness.secrets, span_exporter=exporter)
    caplog.set_level(logging.DEBUG)
    with TestClient(app) as client:
        responses = _traffic(client, harness)
        assert [r.status_code for r in responses] == [200, 200, 502, 401]
        metrics = client.get("/metrics")
    assert metrics.status_code == 200
    # Spans were flushed when the app shut down (BatchSpanProcessor).
    spans = exporter.get_finished_spans()
    chat = [s for s in spans if s.name == "chat fake-model"]
    assert len(chat) == 2
    for span in chat:
        attrs = dict(span.attributes or {})
        assert attrs["gen_ai.operation.name"] == "chat"
        assert attrs["gen_ai.provider.name"] == "vllm"
        assert attrs["gen_ai.request.model"] == "fake-model"
        assert attrs["gen_ai.request.max_tokens"] == 20
        assert attrs["gen_ai.usage.input_tokens"] == 11
        assert attrs["gen_ai.usage.output_tokens"] == len(TOKENS)
        # W3C trace context: the client's trace continues through the gateway...
        assert format(span.context.trace_id, "032x") == TRACEPARENT.split("-")[1]
    assert "gen_ai.response.time_to_first_chunk" in dict(chat[1].attributes or {})
    # ... and on to the engine.
    sent = [h.get("traceparent", "") for h in harness.fake.headers[-3:]]
    assert any(TRACEPARENT.split("-")[1] in value for value in sent)

    samples = _samples(metrics.text)
    ok = samples[("appliance_requests_total", (("model", "fake-model"), ("outcome", "ok")))]
    assert ok == 2
    assert samples[("appliance_tokens_total", (("model", "fake-model"), ("type", "input")))] == 22
    assert samples[("appliance_auth_failures_total", (("reason", "invalid_api_key"),))] == 1
    assert (
        samples[("appliance_errors_total", (("code", "engine_error"), ("type", "api_error")))] == 1
    )
    ttft = samples[("appliance_time_to_first_token_seconds_count", (("model", "fake-model"),))]
    assert ttft == 1
    assert samples[("appliance_requests_in_flight", (("model", "fake-model"),))] == 0
    assert samples[("appliance_audit_append_seconds_count", ())] >= 6
    assert ("appliance_limit_rejections_total", ()) not in samples  # no label set yet

    # Nothing emitted contains the prompt or the answer.
    emitted = [metrics.text]
    for span in spans:
        emitted.append(span.to_json())
    formatter = JsonFormatter()
    emitted += [formatter.format(record) for record in caplog.records]
    blob = "\n".join(emitted)
    assert SECRET_PROMPT not in blob and "zebra-quartz" not in blob
    assert ANSWER not in blob and " Paris" not in blob
    assert len(spans) >= 3


def test_otlp_export_to_a_configured_receiver_only(harness) -> None:
    received: list[bytes] = []

    async def traces(request: Request) -> Response:
        received.append(await request.body())
        return Response(status_code=200)

    receiver = Starlette(routes=[Route("/v1/traces", traces, methods=["POST"])])
    with ServerThread(receiver) as otlp:
        settings = _settings(harness, otlp_endpoint=f"{otlp.url}/v1/traces")
        with TestClient(create_app(settings, secrets=harness.secrets)) as client:
            body = chat_body(messages=[{"role": "user", "content": SECRET_PROMPT}])
            assert client.post(CHAT, json=body, headers=auth(harness.user_key)).status_code == 200
        deadline = time.monotonic() + 10
        while not received and time.monotonic() < deadline:
            time.sleep(0.05)
    assert received, "no OTLP export arrived"
    blob = b"".join(received)
    assert b"gen_ai.request.model" in blob and b"chat fake-model" in blob
    assert SECRET_PROMPT.encode() not in blob


def test_metrics_can_be_turned_off(harness) -> None:
    with TestClient(
        create_app(_settings(harness, metrics_enabled=False), secrets=harness.secrets)
    ) as client:
        assert client.get("/metrics").status_code == 404


def test_json_log_lines_carry_the_request_id() -> None:
    from appliance.telemetry.logs import REQUEST_ID

    token = REQUEST_ID.set("req-12345678")
    try:
        record = logging.LogRecord(
            "appliance.x", logging.WARNING, __file__, 1, "engine %s slow", ("m",), None
        )
        line = json.loads(JsonFormatter().format(record))
    finally:
        REQUEST_ID.reset(token)
    assert line["request_id"] == "req-12345678"
    assert line["message"] == "engine m slow" and line["level"] == "warning"
