"""Relaying an engine's SSE stream to the client, chunk by chunk.

Each chunk is forwarded the moment it arrives. The one change the gateway makes: when
the client did not ask for ``stream_options.include_usage``, the gateway asks for it
itself (the audit record needs token counts) and drops that final usage-only chunk,
so the client sees exactly the stream it asked for. In that mode chunks are forwarded
at SSE event boundaries (vLLM writes whole events, so nothing waits in practice).
The text deltas are gathered as they pass, for the completion record's encrypted
content.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
import httpx

from appliance.audit.records import Outcome
from appliance.gateway.auditing import delta_texts
from appliance.gateway.sse import (
    SseSplitter,
    Usage,
    is_usage_only_chunk,
    parse_event_json,
    usage_of,
)

__all__ = ["error_event", "relay_stream"]

logger = logging.getLogger("appliance.gateway.streaming")

# (outcome, usage, status, text of each choice so far)
FinishCallback = Callable[[Outcome, Usage | None, int, list[str] | None], Awaitable[None]]


def error_event(message: str, *, code: str, error_type: str = "api_error") -> bytes:
    body = {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    return b"data: " + json.dumps(body).encode() + b"\n\ndata: [DONE]\n\n"


def _read_event(event: bytes, texts: dict[int, list[str]]) -> tuple[Usage | None, bool]:
    """Gather the event's text deltas; return (usage, whether it is the usage-only
    chunk)."""
    body = parse_event_json(event)
    delta_texts(body, texts)
    if b'"usage"' not in event:
        return None, False
    return usage_of(body), is_usage_only_chunk(body)


async def relay_stream(
    response: httpx.Response,
    *,
    model: str,
    strip_usage_chunk: bool,
    on_finish: FinishCallback,
    on_first_chunk: Callable[[], None] | None = None,
) -> AsyncIterator[bytes]:
    splitter = SseSplitter()
    usage: Usage | None = None
    texts: dict[int, list[str]] = {}
    # Until the upstream stream ends, an exit means the client went away (the server
    # cancels this generator) unless an upstream error says otherwise.
    outcome = Outcome.CLIENT_DISCONNECTED
    status = 499
    try:
        try:
            async for chunk in response.aiter_raw():
                if on_first_chunk is not None:  # time to first token (telemetry)
                    on_first_chunk()
                    on_first_chunk = None
                events = splitter.feed(chunk)
                forwarded: list[bytes] = []
                for event in events:
                    found, usage_only = _read_event(event, texts)
                    if found is not None:
                        usage = found
                    if not (strip_usage_chunk and usage_only):
                        forwarded.append(event)
                if not strip_usage_chunk:
                    yield chunk
                elif forwarded:
                    yield b"".join(forwarded)
            if splitter.pending():
                _read_event(splitter.pending(), texts)
                if strip_usage_chunk:
                    yield splitter.pending()
            outcome, status = Outcome.OK, 200
        except httpx.HTTPError:
            logger.warning("engine stream for %s broke off", model, exc_info=True)
            outcome, status = Outcome.UPSTREAM_ERROR, 502
            prefix = b"\n\n" if splitter.pending() else b""
            yield prefix + error_event(
                f"the engine for {model} failed during the answer", code="engine_error"
            )
    finally:
        # Shielded: on client disconnect we are being cancelled, yet the engine must be
        # told to stop (closing the connection aborts the request in vLLM) and the
        # completion record must still be written.
        with anyio.CancelScope(shield=True):
            await response.aclose()
            try:
                answer = ["".join(texts[i]) for i in sorted(texts)]
                await on_finish(outcome, usage, status, answer)
            except Exception:
                logger.exception("completion audit record failed for a %s stream", model)
