"""appliance/gateway/relay.py: an in-house engine starts on a request while its record
is made durable (issue 15), yet no byte of the answer reaches the client before the
record is durable, and a failed record aborts the engine request (503). A destination
that does not overlap (an external provider) is sent nothing before the record is durable.

The gateway here is :func:`forward` behind the real error handlers, driven as an ASGI
app so that every message it sends the client is seen the moment it is sent; the engine
is the fake vLLM server; the audit sink holds each request record on an event."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, cast

import pytest
from fastapi import FastAPI, Request, Response
from starlette.applications import Starlette
from starlette.routing import Route

from appliance.audit.log import Appended
from appliance.audit.records import AuditEvent, AuditRecord, Outcome
from appliance.audit.sink import MemoryAuditSink
from appliance.config import Settings
from appliance.errors import ApplianceError
from appliance.gateway.context import request_context
from appliance.gateway.egress_call import ProviderDestination
from appliance.gateway.errors import install_error_handlers
from appliance.gateway.relay import COMPLETIONS, Destination, EngineDestination, forward
from appliance.gateway.schemas import ChatCompletionRequest
from appliance.gateway.services import GatewayServices, utc_now
from appliance.gateway.sse import Usage
from appliance.gateway.upstream import EngineResponse, Upstream, UpstreamAnswer
from appliance.identity.principal import AuthMethod, Principal
from tests.support.fake_vllm import SECRET, TOKENS, FakeState, create_fake_vllm
from tests.support.requests import CHAT, chat_body
from tests.support.servers import ServerThread, free_port

PRINCIPAL = Principal("user-1", "ada", AuthMethod.API_KEY, roles=frozenset({"appliance-user"}))
ANSWER = "".join(TOKENS)
REQUEST_EVENTS = (AuditEvent.REQUEST, AuditEvent.EGRESS_REQUEST)


@dataclass
class Pondering:
    """An engine that takes its time over a whole answer: it answers nothing until its
    client has gone, and counts the requests it got and the clients that left."""

    received: int = 0
    left: int = 0


@pytest.fixture(scope="module")
def engine() -> Iterator[tuple[str, FakeState]]:
    state = FakeState()
    with ServerThread(create_fake_vllm(state)) as server:
        yield server.url, state


@pytest.fixture(scope="module")
def pondering() -> Iterator[tuple[str, Pondering]]:
    seen = Pondering()

    async def completions(request: Request) -> Response:
        await request.body()
        seen.received += 1
        while not await request.is_disconnected():
            await asyncio.sleep(0.01)
        seen.left += 1
        return Response(status_code=204)

    with ServerThread(Starlette(routes=[Route(CHAT, completions, methods=["POST"])])) as server:
        yield server.url, seen


class HeldSink(MemoryAuditSink):
    """Holds every request record until ``released``; ``fail_request`` then fails it
    (and only it: the other records of the request go in)."""

    def __init__(self) -> None:
        super().__init__()
        self.released = asyncio.Event()
        self.fail_request = False

    async def append(self, record: AuditRecord) -> Appended | None:
        if record.event in REQUEST_EVENTS and not self.fail:
            await self.released.wait()
            if self.fail_request:
                raise OSError("the audit database is unreachable")
        return await super().append(record)

    def events(self) -> list[AuditEvent]:
        return [record.event for record in self.records]


class WatchedUpstream(Upstream):
    """The real engine client, counting the answers it opened (status and headers in
    hand) and the openings that failed."""

    opened = 0
    failed = 0

    async def open_stream(
        self,
        model: str,
        path: str,
        payload: dict[str, Any],
        *,
        request_id: str,
        headers: Mapping[str, str] | None = None,
    ) -> EngineResponse:
        try:
            answer = await super().open_stream(
                model, path, payload, request_id=request_id, headers=headers
            )
        except ApplianceError:
            self.failed += 1
            raise
        self.opened += 1
        return answer


def watched_upstream(url: str, pondering: str | None = None) -> WatchedUpstream:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    routes = {"fake-model": url, "fake-slow": url, "fake-absent": dead}
    if pondering is not None:
        routes["pondering"] = pondering
    return WatchedUpstream(routes, api_key=SECRET, connect_timeout_s=1.0, read_timeout_s=60.0)


def gateway(sink: HeldSink, upstream: Upstream, destination: Destination | None = None) -> FastAPI:
    """:func:`forward` on ``POST /v1/chat/completions``, behind the gateway's error handlers."""
    services = cast(
        GatewayServices,
        SimpleNamespace(
            settings=Settings(), audit=sink, upstream=upstream, limiter=None, telemetry=None,
            clock=utc_now,
        ),
    )  # fmt: skip
    app = FastAPI()
    install_error_handlers(app)
    app.state.services = services

    @app.post(CHAT)
    async def chat(request: Request) -> Response:
        payload = await request.json()
        parsed = ChatCompletionRequest.model_validate(payload)
        context = request_context(request)
        context.principal, context.model = PRINCIPAL, parsed.model
        return await forward(
            request, services=services, principal=PRINCIPAL, context=context,
            payload=payload, parsed=parsed, path=CHAT, dialect=COMPLETIONS,
            destination=destination,
        )  # fmt: skip

    return app


@dataclass
class Exchange:
    """One request in flight: what the client has been sent so far."""

    messages: list[dict[str, Any]]
    task: asyncio.Task[None]

    @property
    def status(self) -> int:
        return int(self.messages[0]["status"])

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages[1:])


def send(app: FastAPI, body: dict[str, Any]) -> Exchange:
    content = json.dumps(body).encode()
    messages: list[dict[str, Any]] = []
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": content, "more_body": False}
        await asyncio.Event().wait()  # the client stays until the answer ends
        raise AssertionError("unreachable")

    async def record(message: dict[str, Any]) -> None:
        messages.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": CHAT, "raw_path": CHAT.encode(), "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 5000), "server": ("gateway", 80),
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(content)).encode())],
    }  # fmt: skip
    task = asyncio.get_running_loop().create_task(app(scope, receive, record))  # type: ignore[arg-type]
    return Exchange(messages, task)


async def until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


async def meanwhile() -> None:
    """Time for the gateway to send whatever it would (it has nothing else to wait on)."""
    await asyncio.sleep(0.3)


def error_code(exchange: Exchange) -> str:
    return str(json.loads(exchange.body)["error"]["code"])


def answer_text(exchange: Exchange, stream: bool) -> str:
    if not stream:
        return str(json.loads(exchange.body)["choices"][0]["message"]["content"])
    assert exchange.body.endswith(b"data: [DONE]\n\n")
    events = [
        line[6:] for line in exchange.body.decode().splitlines() if line.startswith("data: {")
    ]
    chunks = [json.loads(event) for event in events]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def test_only_in_house_engines_overlap_the_request_record() -> None:
    assert EngineDestination.overlaps_audit is True
    assert ProviderDestination.overlaps_audit is False


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_the_engine_starts_at_once_but_the_client_waits_for_the_record(
    engine: tuple[str, FakeState], stream: bool
) -> None:
    url, state = engine

    async def scenario() -> None:
        sink, upstream = HeldSink(), watched_upstream(url)
        before = len(state.requests)
        exchange = send(gateway(sink, upstream), chat_body(stream=stream))
        await until(lambda: upstream.opened == 1, "the engine answers while the record is held")
        assert len(state.requests) == before + 1
        assert sink.records == []  # the request record is not durable yet
        await meanwhile()
        assert exchange.messages == []  # not a status, header or byte of the answer
        sink.released.set()
        await exchange.task
        assert exchange.status == 200
        assert answer_text(exchange, stream) == ANSWER
        assert sink.events() == [AuditEvent.REQUEST, AuditEvent.COMPLETION]
        assert sink.records[1].outcome is Outcome.OK
        await upstream.aclose()

    asyncio.run(scenario())


def test_a_failed_record_aborts_the_engine_stream_and_answers_503(
    engine: tuple[str, FakeState],
) -> None:
    url, state = engine

    async def scenario() -> None:
        sink, upstream = HeldSink(), watched_upstream(url)
        cancelled = state.slow_cancelled
        exchange = send(gateway(sink, upstream), chat_body("fake-slow", stream=True))
        await until(lambda: upstream.opened == 1, "the engine streams while the record is held")
        await meanwhile()
        assert exchange.messages == []
        sink.fail_request = True
        sink.released.set()
        await exchange.task
        assert exchange.status == 503
        assert error_code(exchange) == "audit_unavailable"
        assert b"tick" not in exchange.body
        await until(lambda: state.slow_cancelled == cancelled + 1, "the engine sees the close")
        assert AuditEvent.COMPLETION not in sink.events()
        await upstream.aclose()

    asyncio.run(scenario())


def test_a_record_failing_before_the_engine_answers_cancels_the_request(
    engine: tuple[str, FakeState], pondering: tuple[str, Pondering]
) -> None:
    """A whole answer comes only once generated: the gateway does not wait for it to
    learn that it may not relay it, it closes the request's connection."""
    url, _state = engine
    pondering_url, seen = pondering

    async def scenario() -> None:
        sink, upstream = HeldSink(), watched_upstream(url, pondering_url)
        received, left = seen.received, seen.left
        exchange = send(gateway(sink, upstream), chat_body("pondering"))
        await until(lambda: seen.received == received + 1, "the engine has the request")
        sink.fail_request = True
        sink.released.set()
        await exchange.task
        assert exchange.status == 503
        assert error_code(exchange) == "audit_unavailable"
        await until(lambda: seen.left == left + 1, "the engine sees the close")
        assert upstream.opened == 0  # it never answered
        assert AuditEvent.COMPLETION not in sink.events()
        await upstream.aclose()

    asyncio.run(scenario())


@pytest.mark.parametrize("record_fails", [False, True], ids=["recorded", "unrecorded"])
def test_an_engine_failing_before_the_record_is_durable_waits_for_it(
    engine: tuple[str, FakeState], record_fails: bool
) -> None:
    """The engine's failure is told only once the record is: a failed record wins (no
    completion record without a request record), else the failure is recorded as today."""
    url, _state = engine

    async def scenario() -> None:
        sink, upstream = HeldSink(), watched_upstream(url)
        exchange = send(gateway(sink, upstream), chat_body("fake-absent"))
        await until(lambda: upstream.failed == 1, "the engine cannot be reached")
        await meanwhile()
        assert exchange.messages == []
        sink.fail_request = record_fails
        sink.released.set()
        await exchange.task
        assert exchange.status == 503
        if record_fails:
            assert error_code(exchange) == "audit_unavailable"
            assert AuditEvent.COMPLETION not in sink.events()
        else:
            assert error_code(exchange) == "engine_unavailable"
            assert sink.events() == [AuditEvent.REQUEST, AuditEvent.COMPLETION]
            assert sink.records[1].outcome is Outcome.UPSTREAM_ERROR
        await upstream.aclose()

    asyncio.run(scenario())


def test_a_client_leaving_before_the_record_closes_the_engine_stream(
    engine: tuple[str, FakeState],
) -> None:
    url, state = engine

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        reported: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, context: reported.append(context))
        sink, upstream = HeldSink(), watched_upstream(url)
        cancelled = state.slow_cancelled
        exchange = send(gateway(sink, upstream), chat_body("fake-slow", stream=True))
        await until(lambda: upstream.opened == 1, "the engine streams while the record is held")
        exchange.task.cancel()  # the server cancels the request: its client is gone
        with pytest.raises(asyncio.CancelledError):
            await exchange.task
        await until(lambda: state.slow_cancelled == cancelled + 1, "the engine sees the close")
        sink.released.set()
        await meanwhile()
        assert asyncio.all_tasks() == {asyncio.current_task()}  # no record task left behind
        assert exchange.messages == []
        assert AuditEvent.COMPLETION not in sink.events()
        await upstream.aclose()
        gc.collect()
        assert reported == []  # no "never retrieved" nor "destroyed but pending"

    asyncio.run(scenario())


class CannedAnswer:
    """A provider's whole 200 answer."""

    status_code = 200
    headers: Mapping[str, str] = {"content-type": "application/json"}
    body = json.dumps({"choices": [{"index": 0, "message": {"content": ANSWER}}]}).encode()

    async def aread(self) -> bytes:
        return self.body

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        yield self.body

    async def aclose(self) -> None:
        return None


class ProviderLike:
    """A destination that does not overlap: notes, each time it is opened, whether its
    request record was durable by then."""

    request_event = AuditEvent.EGRESS_REQUEST
    engine_priority = False
    overlaps_audit = False

    def __init__(self, sink: HeldSink) -> None:
        self.sink = sink
        self.durable_when_opened: list[bool] = []

    def request_content(self, sent: dict[str, Any]) -> dict[str, Any]:
        return sent

    async def reserve(self) -> None:
        return None

    async def open(
        self,
        model: str,
        path: str,
        payload: dict[str, Any],
        *,
        request_id: str,
        headers: Mapping[str, str] | None,
    ) -> UpstreamAnswer:
        self.durable_when_opened.append(AuditEvent.EGRESS_REQUEST in self.sink.events())
        return CannedAnswer()

    def refusal(self, model: str, path: str, answer: UpstreamAnswer, body: bytes) -> ApplianceError:
        raise AssertionError("the canned answer is a 200")

    async def settle(self, outcome: Outcome, usage: Usage | None) -> dict[str, Any]:
        return {}

    def answer_extra(self) -> dict[str, Any]:
        return {}


@pytest.mark.parametrize("record_fails", [False, True], ids=["recorded", "unrecorded"])
def test_a_provider_is_sent_nothing_before_the_record_is_durable(
    engine: tuple[str, FakeState], record_fails: bool
) -> None:
    url, _state = engine

    async def scenario() -> None:
        sink, upstream = HeldSink(), watched_upstream(url)
        provider = ProviderLike(sink)
        exchange = send(gateway(sink, upstream, provider), chat_body())
        await meanwhile()
        assert provider.durable_when_opened == []
        assert exchange.messages == []
        sink.fail_request = record_fails
        sink.released.set()
        await exchange.task
        if record_fails:
            assert exchange.status == 503
            assert error_code(exchange) == "audit_unavailable"
            assert provider.durable_when_opened == []
        else:
            assert exchange.status == 200
            assert provider.durable_when_opened == [True]
        await upstream.aclose()

    asyncio.run(scenario())


def test_a_record_failing_at_once_never_reaches_the_engine(
    engine: tuple[str, FakeState],
) -> None:
    """An audit writer that is down refuses the record on the spot: no engine is asked,
    even over a connection already open to it."""
    url, state = engine

    async def scenario() -> None:
        sink, upstream = HeldSink(), watched_upstream(url)
        app = gateway(sink, upstream)
        sink.released.set()
        warm = send(app, chat_body())
        await warm.task
        assert warm.status == 200
        sink.fail = True  # every append raises at once, before any wait
        before = len(state.requests)
        exchange = send(app, chat_body(stream=True))
        await exchange.task
        assert exchange.status == 503
        assert error_code(exchange) == "audit_unavailable"
        assert upstream.opened == 1  # the first request's only
        assert len(state.requests) == before
        await upstream.aclose()

    asyncio.run(scenario())
