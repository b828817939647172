"""Structured output and tools through the whole stack: the dev model's JSON-schema
answers validate, a schema vLLM rejects is an OpenAI-shaped 400 the audit notes, and
tool requests the dev engine cannot serve are refused cleanly.

The dev engine runs without ``--enable-auto-tool-choice``/``--tool-call-parser`` and
SmolLM2-135M-Instruct's chat template ignores ``tools``, so it cannot emit a parsable
tool call; these tests check that asking for one is a clear 400, not a 500."""

from __future__ import annotations

import json
from typing import Any

import httpx
import jsonschema
import pytest

from appliance.audit.records import AuditEvent, Outcome
from tests.e2e.conftest import SERVED_NAME, RunningAppliance
from tests.e2e.test_appliance_up import audit_records

pytestmark = pytest.mark.e2e

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
SCHEMA = {
    "type": "object",
    "properties": {"capital": {"type": "string", "maxLength": 40}},
    "required": ["capital"],
    "additionalProperties": False,
}
JSON_SCHEMA_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "capital", "schema": SCHEMA, "strict": True},
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_capital",
            "description": "The capital of a country.",
            "parameters": {
                "type": "object",
                "properties": {"country": {"type": "string"}},
                "required": ["country"],
            },
        },
    }
]


def post(appliance: RunningAppliance, **body: Any) -> httpx.Response:
    return httpx.post(
        f"{appliance.url}/v1/chat/completions",
        json={"model": SERVED_NAME, "messages": QUESTION, "temperature": 0, **body},
        headers={"Authorization": f"Bearer {appliance.admin_key}"},
        timeout=120,
    )


def assert_openai_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    message: str = error["message"]
    return message


def test_json_schema_answer_validates(appliance: RunningAppliance) -> None:
    response = post(appliance, response_format=JSON_SCHEMA_FORMAT, max_tokens=60)
    assert response.status_code == 200, response.text
    content = response.json()["choices"][0]["message"]["content"]
    jsonschema.validate(json.loads(content), SCHEMA)
    done = audit_records(appliance, response.headers["x-request-id"])[-1]
    assert done.outcome is Outcome.OK
    assert done.params["response_format"] == "json_schema"


def test_vllm_structured_outputs_parameter_validates(appliance: RunningAppliance) -> None:
    response = post(appliance, structured_outputs={"json": SCHEMA}, max_tokens=60)
    assert response.status_code == 200, response.text
    jsonschema.validate(json.loads(response.json()["choices"][0]["message"]["content"]), SCHEMA)


def test_streamed_json_schema_answer_validates(appliance: RunningAppliance) -> None:
    pieces: list[str] = []
    with httpx.stream(
        "POST",
        f"{appliance.url}/v1/chat/completions",
        json={
            "model": SERVED_NAME,
            "messages": QUESTION,
            "temperature": 0,
            "max_tokens": 60,
            "stream": True,
            "response_format": JSON_SCHEMA_FORMAT,
        },
        headers={"Authorization": f"Bearer {appliance.admin_key}"},
        timeout=120,
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                for choice in json.loads(line[6:])["choices"]:
                    pieces.append(choice["delta"].get("content") or "")
    jsonschema.validate(json.loads("".join(pieces)), SCHEMA)


def test_schema_the_engine_rejects_is_a_400_and_audited(appliance: RunningAppliance) -> None:
    bad = {"type": "json_schema", "json_schema": {"name": "bad", "schema": {"type": "nonsense"}}}
    response = post(appliance, response_format=bad, max_tokens=20)
    assert assert_openai_error(response, 400)
    records = audit_records(appliance, response.headers["x-request-id"])
    assert [r.event for r in records] == [AuditEvent.REQUEST, AuditEvent.COMPLETION]
    assert records[-1].outcome is Outcome.INVALID
    assert records[-1].status_code == 400
    # The engine took no harm: the next request is answered.
    after = post(appliance, max_tokens=10)
    assert after.status_code == 200, after.text


def test_auto_tool_choice_without_a_parser_is_a_clear_400(appliance: RunningAppliance) -> None:
    response = post(appliance, tools=TOOLS, tool_choice="auto", max_tokens=20)
    message = assert_openai_error(response, 400)
    assert "tool" in message and "--enable-auto-tool-choice" in message
    records = audit_records(appliance, response.headers["x-request-id"])
    assert records[-1].outcome is Outcome.INVALID
    assert records[0].params["tools"] == ["get_capital"]
    assert records[0].params["tool_choice"] == "auto"


def test_forced_tool_choice_without_a_parser_is_a_clear_400(appliance: RunningAppliance) -> None:
    forced = {"type": "function", "function": {"name": "get_capital"}}
    response = post(appliance, tools=TOOLS, tool_choice=forced, max_tokens=20)
    assert "--tool-call-parser" in assert_openai_error(response, 400)


def test_tools_with_tool_choice_none_are_answered(appliance: RunningAppliance) -> None:
    response = post(
        appliance, tools=TOOLS, tool_choice="none", parallel_tool_calls=False, max_tokens=30
    )
    assert response.status_code == 200, response.text
    message = response.json()["choices"][0]["message"]
    assert not message.get("tool_calls")
    assert "Paris" in (message["content"] or "")
    done = audit_records(appliance, response.headers["x-request-id"])[-1]
    assert done.params["tools"] == ["get_capital"]
    assert done.params["tool_choice"] == "none"
    assert done.params["parallel_tool_calls"] is False
    assert "tool_calls" not in done.params
