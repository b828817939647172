"""Relaying an engine's SSE stream to the client, chunk by chunk.

Each whole SSE event is forwarded the moment it arrives (vLLM writes whole events, so
nothing waits in practice). The changes the gateway makes: when the client did not ask
for ``stream_options.include_usage``, the gateway asks for it itself (the audit record
needs token counts) and drops that final usage-only chunk, so the client sees exactly
the stream it asked for; and the event that ends the answer is held until the
completion record is durable, then sent after an SSE comment carrying the answer's
receipt (:mod:`appliance.audit.receipts`). If the record cannot be written, the
client gets an error event (``audit_unavailable``) instead of the end.
The text, reasoning and tool call deltas are gathered as they pass, for the completion
record (tool names in its metadata, everything in its encrypted content). How an API's events
are read is a :class:`StreamEvents`: :class:`ChatEvents` for chat and text completions,
``ResponseEvents`` (:mod:`appliance.gateway.responses`) for the Responses API, whose
typed events are forwarded unchanged and whose usage comes in ``response.completed``.

Whatever happens, the relay is finished exactly once: the engine connection closed,
the quota lease settled and the completion record written. Usually the body's own
``finally`` does it; :class:`RelayResponse` does it when the body never ran (the
client left before the first byte, so the server never started the generator) or was
left suspended.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from appliance.audit.records import Outcome
from appliance.errors import EngineUnavailable, UpstreamError, UpstreamTimeout
from appliance.gateway.answers import Answer, AnswerStream
from appliance.gateway.sse import (
    SseSplitter,
    Usage,
    event_data,
    is_usage_only_chunk,
    parse_event_json,
    usage_of,
)
from appliance.gateway.upstream import UpstreamAnswer

__all__ = [
    "ChatEvents",
    "Finished",
    "RelayResponse",
    "StreamEvents",
    "StreamRelay",
    "error_event",
]

logger = logging.getLogger("appliance.gateway.streaming")

# (outcome, usage, status, the answer so far: text of each choice and tool calls) ->
# the receipt for an answered request (None otherwise); raises if not recorded.
FinishCallback = Callable[[Outcome, Usage | None, int, Answer | None], Awaitable[str | None]]


@dataclass(frozen=True)
class Finished:
    """How a relay ended: whether its completion record is durable, and its receipt."""

    recorded: bool
    receipt: str | None = None


def error_event(message: str, *, code: str, error_type: str = "api_error") -> bytes:
    body = {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    return b"data: " + json.dumps(body).encode() + b"\n\ndata: [DONE]\n\n"


class StreamEvents(Protocol):
    """How one API's SSE events are read as they pass: what they say (usage, the
    answer), which event ends the answer, and the event that reports a broken engine."""

    def read(self, event: bytes) -> tuple[Usage | None, bool]:
        """Gather the event; return (usage, whether it is the usage-only chunk the
        gateway asked for)."""

    def ends(self, event: bytes) -> bool:
        """Whether the client holds the whole answer once it has this event."""

    def answer(self) -> Answer:
        """The answer gathered so far."""

    def failure(self, message: str, *, code: str = "engine_error") -> bytes:
        """The event(s) that end a stream that cannot end well (``code``: the engine
        broke off, or the audit log could not record the answer)."""


class ChatEvents:
    """Chat and text completion chunks: deltas per choice, usage in a usage-only chunk,
    ``data: [DONE]`` at the end."""

    def __init__(self) -> None:
        self._answer = AnswerStream()

    def read(self, event: bytes) -> tuple[Usage | None, bool]:
        body = parse_event_json(event)
        self._answer.add(body)
        if b'"usage"' not in event:
            return None, False
        return usage_of(body), is_usage_only_chunk(body)

    def ends(self, event: bytes) -> bool:
        return event_data(event) == "[DONE]"

    def answer(self) -> Answer:
        return self._answer.answer()

    def failure(self, message: str, *, code: str = "engine_error") -> bytes:
        return error_event(message, code=code)


class StreamRelay:
    """One engine stream on its way to a client; :meth:`chunks` is the body and
    :meth:`finish` the one-time settlement (idempotent)."""

    def __init__(
        self,
        response: UpstreamAnswer,
        *,
        model: str,
        strip_usage_chunk: bool,
        on_finish: FinishCallback,
        on_first_chunk: Callable[[], None] | None = None,
        events: StreamEvents | None = None,
    ) -> None:
        self._response = response
        self._model = model
        self._strip_usage_chunk = strip_usage_chunk
        self._on_finish = on_finish
        self._on_first_chunk = on_first_chunk
        self._usage: Usage | None = None
        self._events: StreamEvents = events if events is not None else ChatEvents()
        self._finished: Finished | None = None

    @property
    def finished(self) -> bool:
        return self._finished is not None

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        splitter = SseSplitter()
        strip = self._strip_usage_chunk
        # Until the upstream stream ends, an exit means the client went away (the server
        # cancels or closes this generator) unless an upstream error says otherwise.
        outcome = Outcome.CLIENT_DISCONNECTED
        status = 499
        # The event that ends the answer (``data: [DONE]``, ``response.completed``) and
        # anything after it wait until the completion record is durable: a client holds
        # a whole answer only once the log does, with its receipt just before the end.
        held: list[bytes] = []
        try:
            try:
                async for chunk in self._response.aiter_raw():
                    if self._on_first_chunk is not None:  # time to first token (telemetry)
                        self._on_first_chunk()
                        self._on_first_chunk = None
                    forwarded: list[bytes] = []
                    for event in splitter.feed(chunk):
                        found, usage_only = self._events.read(event)
                        if found is not None:
                            self._usage = found
                        if strip and usage_only:
                            continue
                        if held or self._events.ends(event):
                            held.append(event)
                        else:
                            forwarded.append(event)
                    if forwarded:  # whole events only: an SSE client acts on nothing less
                        yield b"".join(forwarded)
                    if held:  # the answer is whole: no need to wait for the engine's close
                        break
                tail = splitter.pending()
                if tail:
                    self._events.read(tail)
                    if held:
                        held.append(tail)
                    else:
                        yield tail
                outcome, status = Outcome.OK, 200
            except (UpstreamError, UpstreamTimeout, EngineUnavailable):
                logger.warning("engine stream for %s broke off", self._model, exc_info=True)
                outcome, status = Outcome.UPSTREAM_ERROR, 502
                prefix = b"\n\n" if splitter.pending() else b""
                yield prefix + self._events.failure(
                    f"the engine for {self._model} failed during the answer"
                )
            if outcome is Outcome.OK:
                finished = await self.finish(outcome, status)
                if not finished.recorded:  # no durable record: no successful end either
                    yield self._events.failure(
                        "the answer could not be recorded in the audit log",
                        code="audit_unavailable",
                    )
                    return
                if finished.receipt is not None:
                    yield b": receipt " + finished.receipt.encode("ascii") + b"\n\n"
                if held:
                    yield b"".join(held)
        finally:
            await self.finish(outcome, status)

    async def finish(
        self, outcome: Outcome = Outcome.CLIENT_DISCONNECTED, status: int = 499
    ) -> Finished:
        """Close the engine stream and report the outcome, once. Shielded: on client
        disconnect we are being cancelled, yet the engine must be told to stop (closing
        the connection aborts the request in vLLM), the lease settled and the
        completion record written."""
        if self._finished is not None:
            return self._finished
        self._finished = Finished(recorded=False)
        with anyio.CancelScope(shield=True):
            await self._response.aclose()
            try:
                receipt = await self._on_finish(outcome, self._usage, status, self._events.answer())
            except Exception:
                logger.exception("completion audit record failed for a %s stream", self._model)
            else:
                self._finished = Finished(recorded=True, receipt=receipt)
        return self._finished


class RelayResponse(StreamingResponse):
    """A streaming response that finishes its relay however the response ends.

    Starlette only runs the body's ``finally`` if it started iterating: a client that
    disconnects before the first byte (the send of the response start fails, or the
    disconnect listener cancels the sender first) would otherwise leave the engine
    stream open, the concurrency slot held until its TTL and no completion record."""

    def __init__(
        self,
        relay: StreamRelay,
        *,
        media_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._body = relay.chunks()
        super().__init__(self._body, media_type=media_type, headers=headers)
        self._relay = relay

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                # A body suspended at a yield runs its own finally now; one never
                # started is just marked closed, and finish() settles for it.
                await self._body.aclose()
                await self._relay.finish()
