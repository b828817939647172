"""The Responses API (``POST /v1/responses``) as the gateway reads and shapes it. Pure.

State stays with the gateway, never in the engine: vLLM keeps ``store: true``
responses in its own process memory, unencrypted, readable by anyone who knows an id
(``GET /v1/responses/{id}``) and lost on restart. So the engine is always sent
``store: false``, and the gateway keeps a response the way it keeps every answer: in
the audit log, sealed under the caller's subject key. ``previous_response_id`` is
served from there (:mod:`appliance.gateway.response_store`) by rebuilding the input:
the earlier response's whole input, its output items, then the new input; and so is
``GET /v1/responses/{id}``, to the response's owner only.

Response ids are the gateway's: ``resp_`` + 24 random hex digits + ``_`` + the
gateway request id (sent to vLLM as ``request_id``, which vLLM answers as the
response's ``id``), so the records of a response are found by request id.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

from appliance.gateway.answers import Answer
from appliance.gateway.auditing import response_tool_params
from appliance.gateway.schemas import audited_params
from appliance.gateway.sse import Usage, parse_event_json

__all__ = [
    "ResponseEvents",
    "continued_input",
    "mint_response_id",
    "request_id_of",
    "response_answer",
    "response_content",
    "response_params",
    "response_usage",
    "upstream_payload",
]

_RESPONSE_ID = re.compile(r"^resp_[0-9a-f]{24}_([A-Za-z0-9._-]{1,64})$")
# Events after which the client holds the whole answer.
_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed", "error"})


def mint_response_id(request_id: str) -> str:
    return f"resp_{secrets.token_hex(12)}_{request_id}"


def request_id_of(response_id: str) -> str | None:
    """The gateway request id inside a response id the gateway minted, else None."""
    match = _RESPONSE_ID.match(response_id)
    return match.group(1) if match else None


def _items(value: Any) -> list[Any]:
    """An ``input`` as a list of items (a string is one user message)."""
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    return list(value) if isinstance(value, list) else []


def continued_input(previous_input: Any, previous_output: list[Any], new_input: Any) -> list[Any]:
    """The input that continues an earlier response: everything it was given, what it
    answered (messages, function calls, reasoning), then the new input. The earlier
    ``instructions`` and ``tools`` are not carried over (as in OpenAI's API)."""
    return [*_items(previous_input), *previous_output, *_items(new_input)]


def upstream_payload(payload: dict[str, Any], *, response_id: str) -> dict[str, Any]:
    """What the engine is sent: never stored there (``store: false``), under the
    gateway's response id, with no ``previous_response_id`` (the gateway has put the
    earlier turns into ``input`` already)."""
    forwarded = {
        key: value
        for key, value in payload.items()
        if key not in ("previous_response_id", "store", "request_id", "background")
    }
    forwarded["store"] = False
    forwarded["request_id"] = response_id
    return forwarded


def response_params(
    payload: dict[str, Any], *, response_id: str, store: bool, previous: str | None
) -> dict[str, Any]:
    """Clear-text params of a response's records: sampling parameters, tool names,
    the ``text.format`` type, whether it is stored, its id and the one it continues."""
    params: dict[str, Any] = {
        **audited_params(payload),
        **response_tool_params(payload),
        "store": store,
        "response_id": response_id,
    }
    if previous is not None:
        params["previous_response_id"] = previous
    return params


def response_content(payload: dict[str, Any]) -> dict[str, Any]:
    """The sealed content of a response's request record: the whole input the engine
    got (earlier turns included), with the instructions, tools and formats."""
    content: dict[str, Any] = {"input": payload.get("input")}
    for key in (
        "instructions", "tools", "tool_choice", "text", "structured_outputs",
        "previous_input_messages",
    ):  # fmt: skip
        if key in payload:
            content[key] = payload[key]
    return content


def response_usage(body: dict[str, Any] | None) -> Usage | None:
    """A Response object's ``usage`` (``input_tokens``, ``output_tokens``)."""
    usage = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("input_tokens")
    completion = usage.get("output_tokens")
    return Usage(
        prompt_tokens=prompt if isinstance(prompt, int) else None,
        completion_tokens=completion if isinstance(completion, int) else None,
    )


def _output_text(item: dict[str, Any]) -> str:
    parts = item.get("content")
    if item.get("type") != "message" or not isinstance(parts, list):
        return ""
    return "".join(
        part["text"]
        for part in parts
        if isinstance(part, dict) and part.get("type") == "output_text"
        and isinstance(part.get("text"), str)
    )  # fmt: skip


def _tool_call(item: dict[str, Any]) -> dict[str, Any]:
    """A ``function_call`` output item in the shape chat tool calls are audited in."""
    return {
        "choice": 0,
        "id": item.get("call_id"),
        "type": "function",
        "function": {"name": item.get("name"), "arguments": item.get("arguments")},
    }


def response_answer(body: dict[str, Any] | None) -> Answer | None:
    """A Response object's answer: its output text (OpenAI's ``output_text``: every
    ``output_text`` part joined), its function calls, its output items and the rest of
    the object (status, usage, ...)."""
    if body is None or not isinstance(body.get("output"), list):
        return None
    output: list[Any] = body["output"]
    items = [item for item in output if isinstance(item, dict)]
    calls = [_tool_call(item) for item in items if item.get("type") == "function_call"]
    return Answer(
        texts=["".join(_output_text(item) for item in items)],
        tool_calls=calls,
        output=output,
        response={key: value for key, value in body.items() if key != "output"},
    )


class ResponseEvents:
    """Typed Responses API events as they pass (``response.created``,
    ``response.output_text.delta``, ..., ``response.completed``): the text deltas are
    gathered, and the terminal event's response gives the usage and the output items.
    An answer that never reached a terminal event has text but no output items."""

    def __init__(self) -> None:
        self._deltas: list[str] = []
        self._final: dict[str, Any] | None = None
        self._last_type: Any = None
        self._sequence = -1

    def read(self, event: bytes) -> tuple[Usage | None, bool]:
        body = parse_event_json(event)
        self._last_type = body.get("type") if body is not None else None
        if body is None:
            return None, False
        if isinstance(body.get("sequence_number"), int):
            self._sequence = body["sequence_number"]
        if self._last_type == "response.output_text.delta" and isinstance(body.get("delta"), str):
            self._deltas.append(body["delta"])
        elif self._last_type in _TERMINAL and isinstance(body.get("response"), dict):
            self._final = body["response"]
            return response_usage(self._final), False
        return None, False

    def ends(self, event: bytes) -> bool:
        """Whether the event just :meth:`read` is terminal."""
        return self._last_type in _TERMINAL

    def answer(self) -> Answer:
        if self._final is not None:
            found = response_answer(self._final)
            if found is not None:
                return found
        return Answer(texts=["".join(self._deltas)])

    def failure(self, message: str, *, code: str = "engine_error") -> bytes:
        """OpenAI's ``error`` event, with an ``error`` object too: the official clients
        raise an ``APIError`` from it, as from a chat stream's error chunk."""
        body = {
            "type": "error",
            "code": code,
            "message": message,
            "param": None,
            "sequence_number": self._sequence + 1,
            "error": {"message": message, "type": "api_error", "param": None, "code": code},
        }
        return b"event: error\ndata: " + json.dumps(body).encode() + b"\n\n"
