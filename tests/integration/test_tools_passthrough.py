"""Tools and structured output through the trust layer: the engine receives the
client's fields unchanged, streamed and not; the audit metadata names the tools offered
and called but never their arguments, which stay in the sealed content."""

from __future__ import annotations

import json
from typing import Any
from unittest.mock import ANY

import pytest

from appliance.audit.access import Actor, reveal
from appliance.audit.records import MAX_NAMES, NAME_WIDTH, AuditEvent, Outcome
from appliance.audit.wiring import open_audit_log
from appliance.db import create_db_engine
from tests.support.fake_vllm import TOOL_ARGUMENTS
from tests.support.requests import CHAT, auth, chat_body

AUDITOR = Actor(subject="cli:test", username="test")
CANARY = "canary-description-91ab"  # in a tool's description and parameters
SCHEMA = {
    "type": "object",
    "properties": {"capital": {"type": "string"}},
    "required": ["capital"],
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": f"Weather for a city. {CANARY}",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "description": CANARY}},
                "required": ["city"],
            },
        },
    },
    {"type": "function", "function": {"name": "get_capital", "parameters": SCHEMA}},
]
# Each case: fields a client sends that the engine must receive exactly as sent.
CASES: dict[str, dict[str, Any]] = {
    "tools-auto": {"tools": TOOLS, "tool_choice": "auto", "parallel_tool_calls": True},
    "tools-named": {
        "tools": TOOLS,
        "tool_choice": {"type": "function", "function": {"name": "get_capital"}},
        "parallel_tool_calls": False,
    },
    "tools-none": {"tools": TOOLS, "tool_choice": "none"},
    "json-object": {"response_format": {"type": "json_object"}},
    "json-schema": {
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "capital", "schema": SCHEMA, "strict": True},
        }
    },
    "structured-outputs": {"structured_outputs": {"json": SCHEMA}},
}
# (vLLM 0.32's removed guided_* fields are refused instead: test_guided_fields.py.)
# A tool result in the conversation (sealed, never in the metadata).
HISTORY = [
    {"role": "user", "content": "Weather in Paris?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "canary-tool-result-3c2d"},
]


def sealed(harness, record_id: str) -> dict[str, Any] | None:  # type: ignore[no-untyped-def]
    log = open_audit_log(harness.settings, create_db_engine(harness.settings.database_url))
    content: dict[str, Any] | None = reveal(
        log, record_id, actor=AUDITOR, reason="tools test"
    ).content
    return content


def send(client, harness, body: dict[str, Any], *, stream: bool) -> tuple[str, bytes]:  # type: ignore[no-untyped-def]
    headers = auth(harness.user_key)
    if not stream:
        response = client.post(CHAT, json=body, headers=headers)
        assert response.status_code == 200, response.text
        return response.headers["x-request-id"], response.content
    with client.stream("POST", CHAT, json={**body, "stream": True}, headers=headers) as response:
        assert response.status_code == 200
        return response.headers["x-request-id"], b"".join(response.iter_raw())


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_engine_receives_the_fields_unchanged(client, harness, case: str, stream: bool) -> None:
    body = chat_body(temperature=0, **CASES[case])
    send(client, harness, body, stream=stream)
    received = harness.fake.requests[-1]
    for key, value in CASES[case].items():
        assert received[key] == value, key
    # Nothing else changed either (stream_options is the gateway's, for usage).
    received.pop("stream_options", None)
    assert received == ({**body, "stream": True} if stream else body)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_audit_names_tools_and_seals_arguments(client, harness, stream: bool) -> None:
    body = chat_body(
        messages=HISTORY, tools=TOOLS, tool_choice="required", parallel_tool_calls=False
    )
    request_id, answer = send(client, harness, body, stream=stream)
    assert b"get_weather" in answer  # the client got the engine's tool call
    request, done = harness.records(request_id)
    assert (request.event, done.event) == (AuditEvent.REQUEST, AuditEvent.COMPLETION)
    assert done.outcome is Outcome.OK
    offered = {"tools": ["get_weather", "get_capital"], "tool_choice": "required",
               "parallel_tool_calls": False}  # fmt: skip
    assert request.params == offered | ({"stream": True} if stream else {})
    assert done.params == request.params | {"tool_calls": ["get_weather"], "answer_commitment": ANY}
    # Names only: no argument, description, schema or tool result in clear metadata ...
    for record in (request, done):
        clear = json.dumps(record.params)
        for secret in ("canary", "France", "Paris", "city"):
            assert secret not in clear
    raw = open(harness.settings.database_url.removeprefix("sqlite:///"), "rb").read()
    assert b"canary" not in raw
    # ... and everything in the sealed content: tools, tool results, call arguments.
    asked = sealed(harness, request.record_id)
    assert asked == {"messages": HISTORY, "tools": TOOLS, "tool_choice": "required"}
    answered = sealed(harness, done.record_id)
    assert answered is not None
    assert answered["response"] == ([""] if stream else [])
    (call,) = answered["tool_calls"]
    assert call["choice"] == 0 and call["function"] == {
        "name": "get_weather",
        "arguments": TOOL_ARGUMENTS,
    }


def test_tool_name_lists_are_bounded(client, harness) -> None:
    long_name = "x" * 100
    many = [{"type": "function", "function": {"name": name}}
            for name in [long_name, *(f"t{i}" for i in range(40))]]  # fmt: skip
    response = client.post(
        CHAT, json=chat_body(tools=many, tool_choice="none"), headers=auth(harness.user_key)
    )
    assert response.status_code == 200
    assert harness.fake.requests[-1]["tools"] == many
    names = harness.records(response.headers["x-request-id"])[0].params["tools"]
    assert len(names) == MAX_NAMES
    assert names[:2] == [long_name[:NAME_WIDTH], "t0"]


def test_response_format_type_is_recorded_not_its_schema(client, harness) -> None:
    response = client.post(
        CHAT, json=chat_body(**CASES["json-schema"]), headers=auth(harness.user_key)
    )
    request, done = harness.records(response.headers["x-request-id"])
    assert request.params == {"response_format": "json_schema"}
    assert "capital" not in json.dumps(done.params)
    assert (
        sealed(harness, request.record_id)["response_format"]
        == CASES["json-schema"]["response_format"]
    )


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_schema_the_engine_rejects_is_an_openai_400_and_audited(
    client, harness, stream: bool
) -> None:
    bad = {"type": "json_schema", "json_schema": {"name": "bad", "schema": {"type": "nope"}}}
    response = client.post(
        CHAT, json=chat_body(response_format=bad, stream=stream), headers=auth(harness.user_key)
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert "Invalid JSON schema" in error["message"]
    done = harness.records(response.headers["x-request-id"])[-1]
    assert (done.outcome, done.status_code) == (Outcome.INVALID, 400)
    assert done.params["response_format"] == "json_schema"
