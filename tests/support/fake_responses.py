"""``POST /v1/responses`` of the fake vLLM server, shaped like vLLM 0.32's.

The answer's ``id`` is the ``request_id`` the gateway sent (as vLLM does). Non-streamed:
one Response object. Streamed: vLLM's typed events, each ``event: <type>`` plus
``data: <json>`` with a ``sequence_number``: ``response.created``,
``response.in_progress``, ``response.output_item.added``,
``response.content_part.added``, one ``response.output_text.delta`` per token,
``response.output_text.done``, ``response.content_part.done``,
``response.output_item.done``, ``response.completed`` (which alone carries the usage).

The model picks the behaviour as for chat: ``fake-slow`` streams ``" tick"`` deltas
slowly (and notes its cancellation), ``fake-die`` breaks the connection after two
deltas, ``fake-500`` and ``fake-400`` answer with errors, ``fake-embed`` has no such
route (FastAPI's bare 404). A request offering ``tools`` with a ``tool_choice`` other
than ``"none"`` gets one ``function_call`` of the first tool, arguments
``TOOL_ARGUMENTS``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

if TYPE_CHECKING:
    from tests.support.fake_vllm import FakeState

__all__ = ["RESPONSE_TEXT", "responses_endpoint"]

TOKENS = ["The", " capital", " of", " France", " is", " Paris", "."]
RESPONSE_TEXT = "".join(TOKENS)
PROMPT_TOKENS = 11
TOOL_ARGUMENTS = '{"country": "France", "note": "canary-arguments-5f1e"}'


def _usage(output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": PROMPT_TOKENS,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": PROMPT_TOKENS + output_tokens,
    }


def _message(text: str, status: str = "completed") -> dict[str, Any]:
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": None}],
    }


def _function_call(name: str) -> dict[str, Any]:
    return {
        "id": "fc_fake",
        "type": "function_call",
        "call_id": "call_fake",
        "name": name,
        "arguments": TOOL_ARGUMENTS,
        "status": "completed",
    }


def _response(
    payload: dict[str, Any],
    output: list[dict[str, Any]],
    *,
    status: str,
    usage: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        "id": payload.get("request_id", "resp_fake"),
        "object": "response",
        "created_at": 1,
        "model": payload["model"],
        "status": status,
        "output": output,
        "instructions": payload.get("instructions"),
        "parallel_tool_calls": True,
        "tool_choice": payload.get("tool_choice", "auto"),
        "tools": payload.get("tools", []),
        "temperature": payload.get("temperature", 1.0),
        "top_p": 1.0,
        "max_output_tokens": payload.get("max_output_tokens") or 2048,
        "previous_response_id": payload.get("previous_response_id"),
        "truncation": "disabled",
        "usage": usage,
    }


def _called_tool(payload: dict[str, Any]) -> str | None:
    tools = payload.get("tools")
    if not tools or payload.get("tool_choice", "auto") == "none":
        return None
    return str(tools[0].get("name"))


class _Events:
    """vLLM's SSE framing with a running ``sequence_number``."""

    def __init__(self) -> None:
        self.sequence = 0

    def __call__(self, kind: str, **fields: Any) -> bytes:
        body = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return f"event: {kind}\ndata: {json.dumps(body)}\n\n".encode()


async def _stream(payload: dict[str, Any], state: FakeState) -> AsyncIterator[bytes]:
    model = payload["model"]
    event = _Events()
    started = _response(payload, [], status="in_progress", usage=None)
    yield event("response.created", response=started)
    yield event("response.in_progress", response=started)
    tool = _called_tool(payload)
    if tool is not None:
        call = _function_call(tool)
        yield event("response.output_item.added", output_index=0, item={**call, "arguments": ""})
        yield event("response.function_call_arguments.delta", output_index=0, item_id="fc_fake",
                    delta=TOOL_ARGUMENTS)  # fmt: skip
        yield event("response.output_item.done", output_index=0, item=call)
        done = _response(payload, [call], status="completed", usage=_usage(9))
        yield event("response.completed", response=done)
        return
    yield event("response.output_item.added", output_index=0,
                item={**_message("", "in_progress"), "content": []})  # fmt: skip
    part = {"type": "output_text", "text": "", "annotations": []}
    yield event("response.content_part.added", output_index=0, content_index=0,
                item_id="msg_fake", part=part)  # fmt: skip
    if model == "fake-slow":
        state.slow_started += 1
        try:
            for _ in range(600):
                yield event("response.output_text.delta", output_index=0, content_index=0,
                            item_id="msg_fake", delta=" tick", logprobs=[])  # fmt: skip
                await asyncio.sleep(0.05)
            state.slow_finished += 1
        except BaseException:
            state.slow_cancelled += 1
            raise
        return
    for index, token in enumerate(TOKENS):
        if model == "fake-die" and index == 2:
            await asyncio.sleep(0.3)  # a while after its first tokens (fake_vllm.py)
            raise RuntimeError("engine died")  # uvicorn drops the connection
        yield event("response.output_text.delta", output_index=0, content_index=0,
                    item_id="msg_fake", delta=token, logprobs=[])  # fmt: skip
    yield event("response.output_text.done", output_index=0, content_index=0,
                item_id="msg_fake", text=RESPONSE_TEXT, logprobs=[])  # fmt: skip
    yield event("response.content_part.done", output_index=0, content_index=0,
                item_id="msg_fake", part={**part, "text": RESPONSE_TEXT})  # fmt: skip
    message = _message(RESPONSE_TEXT)
    yield event("response.output_item.done", output_index=0, item=message)
    done = _response(payload, [message], status="completed", usage=_usage(len(TOKENS)))
    yield event("response.completed", response=done)


def responses_endpoint(state: FakeState, *, secret: str, no_route_model: str) -> Any:
    """The Starlette endpoint for ``POST /v1/responses``."""

    async def responses(request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {secret}":
            return JSONResponse({"error": {"message": "Unauthorized"}}, status_code=401)
        payload = await request.json()
        state.requests.append(payload)
        state.headers.append(dict(request.headers))
        model = payload["model"]
        if model == no_route_model:
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        if model == "fake-500":
            return JSONResponse({"error": {"message": "CUDA out of memory at 0x7f"}}, 500)
        if model == "fake-400":
            message = "The engine prompt length 4000 exceeds the max_model_len 2048."
            return JSONResponse(
                {"error": {"message": message, "type": "BadRequestError", "param": "input",
                           "code": 400}}, 400,
            )  # fmt: skip
        if not payload.get("stream"):
            tool = _called_tool(payload)
            output = [_function_call(tool)] if tool is not None else [_message(RESPONSE_TEXT)]
            tokens = 9 if tool is not None else len(TOKENS)
            body = json.dumps(
                _response(payload, output, status="completed", usage=_usage(tokens))
            ).encode()
            state.sent.append(body)
            return Response(body, media_type="application/json")
        sent = bytearray()
        state.sent.append(b"")

        async def noted() -> AsyncIterator[bytes]:
            async for part in _stream(payload, state):
                sent.extend(part)
                state.sent[-1] = bytes(sent)
                yield part

        return StreamingResponse(noted(), media_type="text/event-stream")

    return responses
