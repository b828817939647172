"""A fake vLLM OpenAI server for fast gateway tests.

The model name picks the behaviour, so one server covers every edge case:
``fake-model`` answers normally, ``fake-slow`` streams slowly (and notes when its
stream is cancelled), ``fake-die`` breaks the connection mid-stream, ``fake-500`` and
``fake-400`` answer with errors, ``fake-hang`` never answers in time, ``fake-garbage``
answers 200 with a body that is not JSON. For the browser UI: ``fake-xss`` answers
with HTML and Markdown (``<script>`` must render as text), ``fake-reasoning`` answers
with DeepSeek-R1 style ``reasoning_content`` (streamed: deltas before the answer's), and
``fake-think`` the same under vLLM 0.32's field name, ``reasoning``.

Any model answers a request that offers ``tools`` with a ``tool_choice`` other than
``"none"`` with one call of the chosen (else the first) tool, arguments
``TOOL_ARGUMENTS``, as vLLM does (streamed: name first, arguments in two deltas); and
refuses a ``json_schema`` response format whose schema has an unknown ``type`` with
vLLM's 400.

``fake-embed`` is an embedding model: ``/v1/embeddings`` answers it with vectors of
``EMBED_DIMENSION`` floats derived from a hash of each input (:func:`fake_embedding`),
one token per word or token id. Like vLLM 0.32, which mounts a route only for the
tasks its model runs, ``/v1/embeddings`` answers any other model, and the completion
routes answer ``fake-embed``, with FastAPI's bare ``404 {"detail": "Not Found"}``.

``/v1/responses`` (the Responses API) lives in :mod:`tests.support.fake_responses`;
``/v1/rerank`` and ``/v1/score`` (``fake-embed`` only) in :mod:`tests.support.fake_scoring`;
runtime LoRA loading and ``/v1/models`` in :mod:`tests.support.fake_loras`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import struct
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support.fake_loras import lora_routes
from tests.support.fake_responses import responses_endpoint
from tests.support.fake_scoring import scoring_routes

SECRET = "engine-shared-secret"
TOKENS = ["The", " capital", " of", " France", " is", " Paris", "."]
PROMPT_TOKENS = 11
XSS_TOKENS = [
    "<script>alert(1)</script>",
    " **bold**",
    " and `code`",
    "\n\n```python\n",
    "print('<b>hi</b>')\n",
    "```",
]
REASONING_TOKENS = ["The user asks", " about France;", " its capital is Paris."]
# Reasoning models and the field their reasoning comes in.
REASONING_FIELD = {"fake-reasoning": "reasoning_content", "fake-think": "reasoning"}
TOOL_ARGUMENTS = '{"country": "France", "note": "canary-arguments-5f1e"}'
TOOL_CALL_ID = "chatcmpl-tool-fake"
EMBED_MODEL = "fake-embed"
EMBED_DIMENSION = 8
NO_ROUTE = {"detail": "Not Found"}  # vLLM's answer on a route its model's task lacks
JSON_TYPES = {"object", "array", "string", "number", "integer", "boolean", "null"}


@dataclass
class FakeState:
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    sent: list[bytes] = field(default_factory=list)  # exact bytes of each answer
    slow_started: int = 0
    slow_cancelled: int = 0
    slow_finished: int = 0
    # Runtime LoRA (tests.support.fake_loras): name -> path of the loaded adapters;
    # None: the routes are off, as in a vLLM without VLLM_ALLOW_RUNTIME_LORA_UPDATING.
    loras: dict[str, str] | None = None
    lora_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    lora_models: list[str] = field(default_factory=list)  # base models /v1/models lists


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
    body = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def _usage(model: str, completion: int) -> bytes:
    body = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "choices": [],
        "usage": {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": completion,
            "total_tokens": PROMPT_TOKENS + completion,
        },
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def _called_tool(payload: dict[str, Any]) -> str | None:
    """The tool the fake calls: the named tool choice, else the first tool offered;
    None when no tools are offered or ``tool_choice`` is ``"none"``."""
    tools = payload.get("tools")
    choice = payload.get("tool_choice", "auto")
    if not tools or choice == "none":
        return None
    if isinstance(choice, dict):
        return str(choice["function"]["name"])
    return str(tools[0]["function"]["name"])


def _bad_schema(payload: dict[str, Any]) -> bool:
    response_format = payload.get("response_format") or {}
    if response_format.get("type") != "json_schema":
        return False
    schema = response_format.get("json_schema", {}).get("schema", {})
    return isinstance(schema, dict) and schema.get("type", "object") not in JSON_TYPES


def _tool_call_deltas(name: str) -> list[dict[str, Any]]:
    half = len(TOOL_ARGUMENTS) // 2
    first = {"index": 0, "id": TOOL_CALL_ID, "type": "function", "function": {"name": name}}
    return [
        {"tool_calls": [first]},
        {"tool_calls": [{"index": 0, "function": {"arguments": TOOL_ARGUMENTS[:half]}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": TOOL_ARGUMENTS[half:]}}]},
    ]


def fake_embedding(item: str | list[int]) -> list[float]:
    """The fake's vector for one input: ``EMBED_DIMENSION`` values in [-1, 1) from the
    SHA-256 of its JSON, so equal inputs get equal vectors."""
    digest = hashlib.sha256(json.dumps(item).encode()).digest()
    return [(byte - 128) / 128 for byte in digest[:EMBED_DIMENSION]]


def _embedding_tokens(item: str | list[int]) -> int:
    return len(item) if isinstance(item, list) else max(1, len(item.split()))


def _embeddings(payload: dict[str, Any]) -> dict[str, Any]:
    value = payload["input"]
    items = [value] if isinstance(value, str) or isinstance(value[0], int) else value
    size = min(payload.get("dimensions") or EMBED_DIMENSION, EMBED_DIMENSION)
    data: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        vector: list[float] | str = fake_embedding(item)[:size]
        if payload.get("encoding_format") == "base64":
            vector = base64.b64encode(struct.pack(f"<{size}f", *vector)).decode()
        data.append({"index": index, "object": "embedding", "embedding": vector})
    tokens = sum(_embedding_tokens(item) for item in items)
    return {
        "id": "embd-fake",
        "object": "list",
        "created": 1,
        "model": payload["model"],
        "data": data,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0},
    }


def create_fake_vllm(state: FakeState) -> Starlette:
    async def embeddings(request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {SECRET}":
            return JSONResponse({"error": {"message": "Unauthorized"}}, status_code=401)
        payload = await request.json()
        state.requests.append(payload)
        state.headers.append(dict(request.headers))
        if payload["model"] != EMBED_MODEL:
            return JSONResponse(NO_ROUTE, status_code=404)
        body = json.dumps(_embeddings(payload)).encode()
        state.sent.append(body)
        return Response(body, media_type="application/json")

    async def completions(request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {SECRET}":
            return JSONResponse({"error": {"message": "Unauthorized"}}, status_code=401)
        payload = await request.json()
        state.requests.append(payload)
        state.headers.append(dict(request.headers))
        model = payload["model"]
        if model == EMBED_MODEL:
            return JSONResponse(NO_ROUTE, status_code=404)
        if model == "fake-500":
            return JSONResponse({"error": {"message": "CUDA out of memory at 0x7f"}}, 500)
        if model == "fake-400":
            message = "This model's maximum context length is 2048 tokens."
            return JSONResponse(
                {"error": {"message": message, "type": "BadRequestError", "code": 400}}, 400
            )
        if model == "fake-hang":
            await asyncio.sleep(30)
        if model == "fake-garbage":
            return Response(b"<html>oops</html>", media_type="application/json")
        if _bad_schema(payload):
            message = "Invalid JSON schema: unknown type"
            return JSONResponse(
                {"error": {"message": message, "type": "BadRequestError", "code": 400}}, 400
            )
        tool = _called_tool(payload)
        if tool is not None and not payload.get("stream"):
            call = {"id": TOOL_CALL_ID, "type": "function",
                    "function": {"name": tool, "arguments": TOOL_ARGUMENTS}}  # fmt: skip
            body = json.dumps(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": None, "tool_calls": [call]},
                            "finish_reason": "tool_calls",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": PROMPT_TOKENS,
                        "completion_tokens": 9,
                        "total_tokens": PROMPT_TOKENS + 9,
                    },
                }
            ).encode()
            state.sent.append(body)
            return Response(body, media_type="application/json")
        reasoning_field = REASONING_FIELD.get(model)
        if not payload.get("stream"):
            reasoning_message = (
                {reasoning_field: "".join(REASONING_TOKENS)} if reasoning_field else {}
            )
            body = json.dumps(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {
                                "role": "assistant",
                                "content": "".join(TOKENS),
                                **reasoning_message,
                            },
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": PROMPT_TOKENS,
                        "completion_tokens": len(TOKENS),
                        "total_tokens": PROMPT_TOKENS + len(TOKENS),
                    },
                }
            ).encode()
            state.sent.append(body)
            return Response(body, media_type="application/json")

        include_usage = bool((payload.get("stream_options") or {}).get("include_usage"))
        sent = bytearray()
        state.sent.append(b"")

        async def stream():  # type: ignore[no-untyped-def]
            def note(part: bytes) -> bytes:
                sent.extend(part)
                state.sent[-1] = bytes(sent)
                return part

            if model == "fake-slow":
                state.slow_started += 1
                try:
                    for _ in range(600):
                        yield note(_chunk(model, {"content": " tick"}))
                        await asyncio.sleep(0.05)
                    state.slow_finished += 1
                except BaseException:
                    state.slow_cancelled += 1
                    raise
                return
            yield note(_chunk(model, {"role": "assistant", "content": ""}))
            if tool is not None:
                for delta in _tool_call_deltas(tool):
                    yield note(_chunk(model, delta))
                yield note(_chunk(model, {}, finish="tool_calls"))
                if include_usage:
                    yield note(_usage(model, 9))
                yield note(b"data: [DONE]\n\n")
                return
            if reasoning_field is not None:
                for thought in REASONING_TOKENS:
                    yield note(_chunk(model, {reasoning_field: thought}))
            answer = XSS_TOKENS if model == "fake-xss" else TOKENS
            for index, token in enumerate(answer):
                if model == "fake-die" and index == 2:
                    # Dies a while after its first tokens, as an engine between two
                    # decode steps: the gateway has read them by then (aiohttp drops
                    # what it buffered once the connection breaks).
                    await asyncio.sleep(0.3)
                    raise RuntimeError("engine died")  # uvicorn drops the connection
                yield note(_chunk(model, {"content": token}))
            yield note(_chunk(model, {}, finish="stop"))
            if include_usage:
                yield note(_usage(model, len(TOKENS)))
            yield note(b"data: [DONE]\n\n")

        return StreamingResponse(stream(), media_type="text/event-stream")

    async def health(_request: Request) -> Response:
        return Response(status_code=200)

    return Starlette(
        routes=[
            Route("/v1/chat/completions", completions, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
            Route(
                "/v1/responses",
                responses_endpoint(state, secret=SECRET, no_route_model=EMBED_MODEL),
                methods=["POST"],
            ),
            Route("/health", health),
            *scoring_routes(state, secret=SECRET, model=EMBED_MODEL),
            *lora_routes(state, secret=SECRET),
        ]
    )
