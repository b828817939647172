"""The Responses API's pure parts: response ids, the rebuilt input of a continuation,
what the engine is sent, and the typed events read as they pass."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from appliance.audit.records import Outcome
from appliance.gateway.responses import (
    ResponseEvents,
    continued_input,
    mint_response_id,
    request_id_of,
    response_answer,
    response_params,
    response_usage,
    upstream_payload,
)
from appliance.gateway.streaming import StreamRelay
from tests.unit.gateway.test_streaming import HangingEngine

MESSAGE = {
    "type": "message",
    "role": "assistant",
    "content": [{"type": "output_text", "text": "Paris.", "annotations": []}],
}
CALL = {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}


def event(kind: str, **fields: Any) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **fields})}\n\n".encode()


def test_ids_carry_the_request_id_and_parse_back() -> None:
    first, second = mint_response_id("req-1.a_B"), mint_response_id("req-1.a_B")
    assert first != second and first.startswith("resp_")
    assert request_id_of(first) == "req-1.a_B"
    for foreign in ("resp_abc", "resp_" + "0" * 24, "resp_" + "g" * 24 + "_x", "msg_1"):
        assert request_id_of(foreign) is None
    assert len(mint_response_id("x" * 64)) <= 100  # fits previous_response_id's limit


def test_continued_input_is_history_then_output_then_new() -> None:
    user = {"type": "message", "role": "user", "content": "Hi"}
    assert continued_input("Hi", [MESSAGE], "More") == [
        user, MESSAGE, {**user, "content": "More"},
    ]  # fmt: skip
    assert continued_input([user], [MESSAGE, CALL], [user]) == [user, MESSAGE, CALL, user]


def test_the_engine_never_stores_nor_continues() -> None:
    payload = {"model": "m", "input": "x", "store": True, "previous_response_id": "resp_1",
               "request_id": "mine", "background": False, "temperature": 0}  # fmt: skip
    assert upstream_payload(payload, response_id="resp_gw") == {
        "model": "m", "input": "x", "temperature": 0, "store": False, "request_id": "resp_gw",
    }  # fmt: skip


def test_answer_and_usage_of_a_response() -> None:
    body = {"output": [MESSAGE, CALL], "usage": {"input_tokens": 3, "output_tokens": 4}}
    answer = response_answer(body)
    assert answer is not None
    assert answer.texts == ["Paris."] and answer.output == [MESSAGE, CALL]
    assert answer.tool_names() == ["f"]
    usage = response_usage(body)
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (3, 4)
    assert response_answer({"output": None}) is None and response_usage({}) is None


def test_events_gather_deltas_and_the_final_response() -> None:
    events = ResponseEvents()
    final = {"output": [MESSAGE], "usage": {"input_tokens": 1, "output_tokens": 2}}
    assert events.read(event("response.created", sequence_number=0, response={})) == (None, False)
    assert not events.ends(b"")
    events.read(event("response.output_text.delta", sequence_number=1, delta="Par"))
    assert events.answer().texts == ["Par"] and events.answer().output is None
    usage, usage_only = events.read(event("response.completed", sequence_number=2,
                                          response=final))  # fmt: skip
    assert events.ends(b"") and not usage_only
    assert usage is not None and usage.completion_tokens == 2
    assert events.answer().output == [MESSAGE]


def test_failure_is_an_openai_error_event_after_the_last_sequence_number() -> None:
    events = ResponseEvents()
    events.read(event("response.output_text.delta", sequence_number=4, delta="x"))
    raw = events.failure("the engine failed")
    assert raw.startswith(b"event: error\ndata: ")
    body = json.loads(raw.split(b"data: ", 1)[1])
    assert (body["type"], body["code"], body["sequence_number"]) == ("error", "engine_error", 5)
    assert body["error"]["message"] == "the engine failed"


@pytest.mark.parametrize(
    ("sent", "outcome"),
    [
        ([event("response.created", response={}), event("response.completed", response={})],
         Outcome.OK),
        ([event("response.created", response={})], Outcome.CLIENT_DISCONNECTED),
    ],
    ids=["after-completed", "before-completed"],
)  # fmt: skip
def test_leaving_after_the_terminal_event_is_a_complete_answer(
    sent: list[bytes], outcome: Outcome
) -> None:
    finished: list[Outcome] = []

    async def on_finish(found: Outcome, *_: Any) -> None:
        finished.append(found)

    async def run() -> None:
        relay = StreamRelay(
            HangingEngine(sent),  # type: ignore[arg-type]
            model="m", strip_usage_chunk=False, on_finish=on_finish, events=ResponseEvents(),
        )  # fmt: skip
        received: list[bytes] = []
        async with anyio.create_task_group() as group:

            async def consume() -> None:
                async for chunk in relay.chunks():
                    received.append(chunk)
                    if b"".join(received) == b"".join(sent):
                        group.cancel_scope.cancel()

            group.start_soon(consume)

    anyio.run(run)
    assert finished == [outcome]


def test_params_name_tools_and_formats_never_their_schemas() -> None:
    payload = {
        "temperature": 0,
        "max_output_tokens": 5,
        "tools": [{"type": "function", "name": "f", "parameters": {"secret": 1}},
                  {"type": "web_search_preview"}],
        "tool_choice": {"type": "web_search_preview"},
        "text": {"format": {"type": "json_schema", "schema": {"secret": 1}}},
    }  # fmt: skip
    assert response_params(payload, response_id="resp_1", store=True, previous="resp_0") == {
        "temperature": 0, "max_output_tokens": 5, "tools": ["f", "web_search_preview"],
        "tool_choice": {"type": "web_search_preview"}, "response_format": "json_schema",
        "store": True, "response_id": "resp_1", "previous_response_id": "resp_0",
    }  # fmt: skip
    named = {"tool_choice": {"type": "function", "name": "f"}}
    assert response_params(named, response_id="r", store=False, previous=None)["tool_choice"] == {
        "function": "f"
    }
