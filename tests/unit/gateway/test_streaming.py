"""StreamRelay's outcome when the client leaves: before the end of the answer it is a
disconnect; after the terminal ``[DONE]`` event was handed over, the answer is complete
(the official clients close at once, before the engine's connection reports its end)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from appliance.audit.records import Outcome
from appliance.gateway.streaming import StreamRelay

CONTENT = b'data: {"choices": [{"index": 0, "delta": {"content": "Paris"}}]}\n\n'
DONE = b"data: [DONE]\n\n"


class HangingEngine:
    """An engine response that sends ``events`` and then keeps its connection open."""

    def __init__(self, events: list[bytes]) -> None:
        self.events = events
        self.closed = False

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        for event in self.events:
            yield event
        await anyio.sleep_forever()

    async def aclose(self) -> None:
        self.closed = True


async def relay_until_client_leaves(events: list[bytes], *, strip: bool) -> tuple[Any, ...]:
    """Consume the relay as Starlette does (send, then ask for the next chunk) and cancel
    once the client has everything the engine sent: (outcome, status, answer, engine)."""
    finished: list[tuple[Any, ...]] = []

    async def on_finish(outcome: Outcome, usage: Any, status: int, answer: Any) -> None:
        finished.append((outcome, status, answer))

    engine = HangingEngine(events)
    relay = StreamRelay(
        engine,  # type: ignore[arg-type]
        model="m",
        strip_usage_chunk=strip,
        on_finish=on_finish,
    )
    received: list[bytes] = []
    async with anyio.create_task_group() as group:

        async def consume() -> None:
            async for chunk in relay.chunks():
                received.append(chunk)
                if b"".join(received) == b"".join(events):
                    group.cancel_scope.cancel()  # the client closes the connection

        group.start_soon(consume)
    assert finished, "the relay never finished"
    return (*finished[0], engine)


@pytest.mark.parametrize("strip", [True, False])
def test_leaving_after_done_is_a_complete_answer(strip: bool) -> None:
    outcome, status, answer, engine = anyio.run(
        lambda: relay_until_client_leaves([CONTENT, DONE], strip=strip)
    )
    assert (outcome, status) == (Outcome.OK, 200)
    assert answer.texts == ["Paris"]
    assert engine.closed


@pytest.mark.parametrize("strip", [True, False])
def test_leaving_before_done_is_a_disconnect(strip: bool) -> None:
    outcome, status, _answer, engine = anyio.run(
        lambda: relay_until_client_leaves([CONTENT], strip=strip)
    )
    assert (outcome, status) == (Outcome.CLIENT_DISCONNECTED, 499)
    assert engine.closed


class ClosingEngine(HangingEngine):
    """Sends ``events`` and ends the stream (as vLLM does after ``[DONE]``)."""

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        for event in self.events:
            yield event


async def relay_all(events: list[bytes], on_finish: Any) -> list[bytes]:
    relay = StreamRelay(
        ClosingEngine(events),  # type: ignore[arg-type]
        model="m",
        strip_usage_chunk=False,
        on_finish=on_finish,
    )
    return [chunk async for chunk in relay.chunks()]


def test_the_end_waits_for_the_completion_record_and_follows_the_receipt() -> None:
    order: list[str] = []

    async def on_finish(outcome: Outcome, usage: Any, status: int, answer: Any) -> str:
        order.append("recorded")
        return "RECEIPT"

    async def run() -> list[bytes]:
        chunks = []
        async for chunk in (await _relay(on_finish)).chunks():
            order.append(chunk.decode())
            chunks.append(chunk)
        return chunks

    async def _relay(on_finish: Any) -> StreamRelay:
        return StreamRelay(
            ClosingEngine([CONTENT, DONE]),  # type: ignore[arg-type]
            model="m", strip_usage_chunk=False, on_finish=on_finish,
        )  # fmt: skip

    chunks = anyio.run(run)
    assert b"".join(chunks) == CONTENT + b": receipt RECEIPT\n\n" + DONE
    assert order.index("recorded") < order.index(DONE.decode())  # durable before the end


def test_no_successful_end_when_the_completion_record_fails() -> None:
    async def on_finish(outcome: Outcome, usage: Any, status: int, answer: Any) -> str:
        raise OSError("audit log down")

    body = b"".join(anyio.run(lambda: relay_all([CONTENT, DONE], on_finish)))
    assert body.startswith(CONTENT)
    assert b"audit_unavailable" in body and b"receipt" not in body
    # The engine's own [DONE] never went out; only the error event's closing one did.
    assert body.count(DONE) == 1 and body.index(b"audit_unavailable") < body.index(DONE)
