"""``POST /v1/responses`` through the trust layer: identity, model policy, limits and
audit as for chat; the engine's answer relayed unchanged, streamed (typed events) and
not; the engine never asked to store anything."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import httpx
import openai
import pytest
from fastapi.testclient import TestClient

from appliance.audit.access import Actor, reveal
from appliance.audit.records import AuditEvent, Outcome
from appliance.audit.wiring import open_audit_log
from appliance.config import LimitsSettings
from appliance.db import create_db_engine
from appliance.gateway import create_app
from appliance.gateway.responses import request_id_of
from tests.integration.conftest import GatewayHarness
from tests.support.fake_responses import PROMPT_TOKENS, RESPONSE_TEXT, TOKENS, TOOL_ARGUMENTS
from tests.support.receipts import without_receipt
from tests.support.requests import auth
from tests.support.servers import ServerThread

RESPONSES = "/v1/responses"
AUDITOR = Actor(subject="cli:test", username="test")
CANARY = "canary-responses-input-2b7e"
TOOLS = [
    {
        "type": "function",
        "name": "get_capital",
        "description": f"The capital of a country. {CANARY}",
        "parameters": {"type": "object", "properties": {"country": {"type": "string"}}},
    }
]
TEXT_FORMAT = {
    "format": {
        "type": "json_schema",
        "name": "capital",
        "schema": {"type": "object", "properties": {"capital": {"type": "string"}}},
    }
}


def body(model: str = "fake-model", **extra: Any) -> dict[str, Any]:
    return {"model": model, "input": f"What is the capital of France? {CANARY}", **extra}


def post(client: TestClient, key: str, **extra: Any) -> httpx.Response:
    return client.post(RESPONSES, json=body(**extra), headers=auth(key))


def stream(client: TestClient, key: str, **extra: Any) -> tuple[httpx.Response, bytes]:
    """The response, and its body without the receipt comment before the final event
    (an answered stream has one; a broken or refused one none)."""
    with client.stream(
        "POST", RESPONSES, json=body(stream=True, **extra), headers=auth(key)
    ) as response:
        raw = b"".join(response.iter_raw())
    if b"\n: receipt " not in b"\n" + raw:  # refused, or the engine broke off: no receipt
        return response, raw
    return response, without_receipt(raw)[0]


def events(raw: bytes) -> list[dict[str, Any]]:
    """The data of each SSE event, checking that its ``event:`` line names its type."""
    found = []
    for block in raw.decode().split("\n\n"):
        if not block or block.startswith(":"):  # empty, or a comment (the receipt)
            continue
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        data = json.loads(lines["data"])
        assert lines["event"] == data["type"]
        found.append(data)
    return found


def sealed(harness: GatewayHarness, record_id: str) -> dict[str, Any] | None:
    log = open_audit_log(harness.settings, create_db_engine(harness.settings.database_url))
    content: dict[str, Any] | None = reveal(
        log, record_id, actor=AUDITOR, reason="responses test"
    ).content
    return content


def raw_store(harness: GatewayHarness) -> bytes:
    path = Path(harness.settings.database_url.removeprefix("sqlite:///"))
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def test_answer_is_relayed_byte_for_byte_and_never_stored_in_the_engine(client, harness) -> None:
    response = post(client, harness.user_key, store=True, request_id="resp_mine", temperature=0)
    assert response.status_code == 200, response.text
    assert response.content == harness.fake.sent[-1]
    answer = response.json()
    request_id = response.headers["x-request-id"]
    assert request_id_of(answer["id"]) == request_id  # the gateway's id
    received = harness.fake.requests[-1]
    assert received["store"] is False
    assert received["request_id"] == answer["id"]  # not the client's
    assert received["input"] == body()["input"] and received["temperature"] == 0
    assert answer["output"][0]["content"][0]["text"] == RESPONSE_TEXT


def test_the_official_client_reads_it(client, harness) -> None:
    sdk = openai.OpenAI(base_url="http://testserver/v1", api_key=harness.user_key,
                        http_client=client)  # fmt: skip
    made = sdk.responses.create(model="fake-model", input="What is the capital of France?")
    assert made.output_text == RESPONSE_TEXT
    assert made.usage is not None and made.usage.input_tokens == PROMPT_TOKENS
    kinds = [event.type for event in sdk.responses.create(
        model="fake-model", input="What is the capital of France?", stream=True
    )]  # fmt: skip
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert kinds.count("response.output_text.delta") == len(TOKENS)


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
def test_audit_seals_input_and_output_and_keeps_metadata_clear(
    client, harness, streamed: bool
) -> None:
    extra = {"instructions": "Answer briefly.", "temperature": 0.5, "max_output_tokens": 30,
             "text": TEXT_FORMAT}  # fmt: skip
    if streamed:
        response, raw = stream(client, harness.user_key, **extra)
        response_id = events(raw)[0]["response"]["id"]
    else:
        response = post(client, harness.user_key, **extra)
        response_id = response.json()["id"]
    assert response.status_code == 200
    request, done = harness.records(response.headers["x-request-id"])
    assert (request.event, done.event) == (AuditEvent.REQUEST, AuditEvent.COMPLETION)
    assert (done.outcome, done.status_code) == (Outcome.OK, 200)
    assert request.path == RESPONSES and request.model == "fake-model"
    assert (done.prompt_tokens, done.completion_tokens) == (PROMPT_TOKENS, len(TOKENS))
    clear = {"temperature": 0.5, "max_output_tokens": 30, "response_format": "json_schema",
             "store": True, "response_id": response_id}  # fmt: skip
    assert request.params == clear | ({"stream": True} if streamed else {})
    assert done.params == request.params | {"answer_commitment": ANY}  # salted: receipts
    # Content only sealed: never in clear metadata, nowhere in the database's bytes.
    assert CANARY not in json.dumps([request.params, done.params])
    assert CANARY.encode() not in raw_store(harness)
    assert b"Paris" not in raw_store(harness)
    asked = sealed(harness, request.record_id)
    assert asked == {"input": body()["input"], "instructions": "Answer briefly.",
                     "text": TEXT_FORMAT}  # fmt: skip
    answered = sealed(harness, done.record_id)
    assert answered is not None
    assert answered["response"] == [RESPONSE_TEXT]
    assert answered["output"][0]["content"][0]["text"] == RESPONSE_TEXT


def test_stream_is_relayed_unchanged_with_typed_events(client, harness) -> None:
    response, raw = stream(client, harness.user_key)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert raw == harness.fake.sent[-1]
    kinds = [event["type"] for event in events(raw)]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert "".join(e["delta"] for e in events(raw) if e["type"].endswith("text.delta")) == (
        RESPONSE_TEXT
    )
    assert events(raw)[-1]["response"]["usage"]["output_tokens"] == len(TOKENS)
    assert harness.fake.requests[-1]["stream"] is True
    assert "stream_options" not in harness.fake.requests[-1]  # usage comes anyway


@pytest.mark.parametrize("streamed", [False, True], ids=["plain", "stream"])
def test_tool_names_in_metadata_arguments_sealed(client, harness, streamed: bool) -> None:
    extra = {"tools": TOOLS, "tool_choice": "required", "parallel_tool_calls": False}
    if streamed:
        response, _raw = stream(client, harness.user_key, **extra)
    else:
        response = post(client, harness.user_key, **extra)
    assert harness.fake.requests[-1]["tools"] == TOOLS
    request, done = harness.records(response.headers["x-request-id"])
    assert request.params["tools"] == ["get_capital"]
    assert request.params["tool_choice"] == "required"
    assert request.params["parallel_tool_calls"] is False
    assert done.params["tool_calls"] == ["get_capital"]
    assert "canary" not in json.dumps([request.params, done.params])
    assert sealed(harness, request.record_id)["tools"] == TOOLS  # type: ignore[index]
    answered = sealed(harness, done.record_id)
    assert answered is not None
    assert answered["tool_calls"][0]["function"] == {
        "name": "get_capital",
        "arguments": TOOL_ARGUMENTS,
    }
    assert answered["output"][0]["type"] == "function_call"


def test_model_policy_applies_and_is_audited(client, harness) -> None:
    other_only = harness.key(models=["fake-slow"])
    sent = len(harness.fake.requests)
    response = post(client, other_only)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "model_not_allowed"
    (denied,) = harness.records(response.headers["x-request-id"])
    assert (denied.event, denied.outcome) == (AuditEvent.DENIED, Outcome.DENIED)
    missing = post(client, harness.user_key, model="nope")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "model_not_found")
    assert len(harness.fake.requests) == sent


def test_bad_requests_are_openai_400s_before_any_engine(client, harness) -> None:
    sent = len(harness.fake.requests)
    for extra, param in (
        ({"input": ""}, "input"),
        ({"input": []}, "input"),
        ({"background": True}, "background"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"max_output_tokens": 10**7}, "max_output_tokens"),
    ):
        response = post(client, harness.user_key, **extra)
        assert response.status_code == 400, (extra, response.text)
        error = response.json()["error"]
        assert (error["type"], error["param"]) == ("invalid_request_error", param)
    assert "response store" in post(client, harness.user_key, background=True).text
    assert len(harness.fake.requests) == sent


def test_token_quota_counts_the_input(harness) -> None:
    # 200 characters of input (about 52 tokens) + max_output_tokens 40 are reserved;
    # 18 are used. In a 100-token budget the first fits; the second's 92 do not fit in
    # the 82 left. Without the input counted (41 tokens each) both would.
    limits = LimitsSettings(roles={"appliance-user": {"tpm": 100}})  # type: ignore[dict-item]
    settings = harness.settings.model_copy(update={"limits": limits})
    extra = {"input": "a" * 200, "max_output_tokens": 40}
    with TestClient(create_app(settings, secrets=harness.secrets)) as client:
        first = client.post(RESPONSES, json=body(**extra), headers=auth(harness.user_key))
        second = client.post(RESPONSES, json=body(**extra), headers=auth(harness.user_key))
    assert first.status_code == 200
    assert second.status_code == 429
    assert "tokens per minute" in second.json()["error"]["message"]


def test_client_disconnect_cancels_the_engine_and_is_audited(harness, wait_until) -> None:
    app = create_app(harness.settings, secrets=harness.secrets)
    cancelled_before = harness.fake.slow_cancelled
    with ServerThread(app) as gateway, httpx.Client(base_url=gateway.url, timeout=10) as http:
        with http.stream(
            "POST", RESPONSES, json=body("fake-slow", stream=True),
            headers=auth(harness.user_key),
        ) as response:  # fmt: skip
            request_id = response.headers["x-request-id"]
            first = next(response.iter_raw())
            assert b"response.created" in first
        assert wait_until(lambda: harness.fake.slow_cancelled > cancelled_before)
        assert wait_until(lambda: len(harness.records(request_id)) == 2)
    done = harness.records(request_id)[-1]
    assert (done.outcome, done.status_code) == (Outcome.CLIENT_DISCONNECTED, 499)


def test_engine_dying_mid_stream_ends_with_an_error_event(client, harness) -> None:
    response, raw = stream(client, harness.user_key, model="fake-die")
    assert response.status_code == 200  # the stream had started
    last = events(raw)[-1]
    assert (last["type"], last["code"]) == ("error", "engine_error")
    assert last["error"]["code"] == "engine_error"
    assert b"engine died" not in raw
    done = harness.records(response.headers["x-request-id"])[-1]
    assert (done.outcome, done.status_code) == (Outcome.UPSTREAM_ERROR, 502)
    assert sealed(harness, done.record_id) == {"response": ["The capital"]}


def test_engine_die_raises_in_the_official_client(client, harness) -> None:
    sdk = openai.OpenAI(base_url="http://testserver/v1", api_key=harness.user_key,
                        http_client=client)  # fmt: skip
    with pytest.raises(openai.APIError, match="failed during the answer"):
        list(sdk.responses.create(model="fake-die", input="hi", stream=True))


@pytest.mark.parametrize(
    ("model", "status", "code", "fragment"),
    [
        ("fake-500", 502, "engine_error", "failed"),
        ("fake-400", 400, "invalid_request", "max_model_len"),
        ("fake-absent", 503, "engine_unavailable", "reachable"),
    ],
)
def test_engine_errors_are_translated_and_audited(
    client, harness, model: str, status: int, code: str, fragment: str
) -> None:
    response = post(client, harness.user_key, model=model)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and fragment in error["message"]
    assert "CUDA" not in response.text
    request, done = harness.records(response.headers["x-request-id"])
    assert request.event is AuditEvent.REQUEST
    assert done.status_code == status
    assert done.outcome is (Outcome.INVALID if status == 400 else Outcome.UPSTREAM_ERROR)
