"""The engine client against real sockets: a recording ASGI app under uvicorn, a raw
socket that breaks the protocol, and a port nobody listens on."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator

import aiohttp
import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from appliance.config import RoutingSettings
from appliance.errors import (
    EngineUnavailable,
    InvalidRequest,
    ModelNotFound,
    UpstreamError,
    UpstreamTimeout,
)
from appliance.gateway.engine_errors import map_upstream_exceptions, upstream_status_error
from appliance.gateway.pool import ReplicaState
from appliance.gateway.upstream import Upstream
from tests.support.servers import ServerThread, free_port


@pytest.fixture(scope="module")
def engine() -> Iterator[tuple[str, list[dict[str, object]]]]:
    """A stand-in engine recording what it was sent; ``/slow`` answers after 2 s."""
    seen: list[dict[str, object]] = []

    async def chat(request: Request) -> Response:
        seen.append({"headers": dict(request.headers), "body": await request.body()})
        return JSONResponse({"ok": True})

    async def slow(request: Request) -> Response:
        await asyncio.sleep(2)
        return JSONResponse({"late": True})

    async def health(request: Request) -> Response:
        await asyncio.sleep(0.5)
        return Response(status_code=200)

    app = Starlette(routes=[
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/slow", slow, methods=["POST"]),
        # Replicas behind path prefixes: "{url}/up/health" answers after 0.5 s.
        Route("/up/health", health),
        Route("/up2/health", health),
        Route("/sick/health", lambda _request: Response(status_code=503)),
    ])  # fmt: skip
    with ServerThread(app) as server:
        yield server.url, seen


@pytest.fixture
def broken_engine() -> Iterator[str]:
    """Answers 200 with a Content-Length it never delivers, then hangs up."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        with listener:
            connection, _ = listener.accept()
            with connection:
                connection.recv(65536)
                connection.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"par')

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    thread.join(timeout=5)


def make_upstream(url: str, read_timeout_s: float = 1) -> Upstream:
    return Upstream(
        {"m": url}, api_key="shared", connect_timeout_s=1, read_timeout_s=read_timeout_s
    )


async def _open(upstream: Upstream, model: str = "m", path: str = "/v1/chat/completions") -> int:
    try:
        response = await upstream.open_stream(model, path, {"model": model}, request_id="req-1")
        await response.aread()
        await response.aclose()
        return response.status_code
    finally:
        await upstream.aclose()


def test_sends_secret_request_id_and_json(engine) -> None:  # type: ignore[no-untyped-def]
    url, seen = engine
    seen.clear()
    assert anyio.run(_open, make_upstream(url)) == 200
    (request,) = seen
    headers = request["headers"]
    assert headers["authorization"] == "Bearer shared"  # type: ignore[index]
    assert headers["x-request-id"] == "req-1"  # type: ignore[index]
    assert headers["accept-encoding"] == "identity"  # type: ignore[index]
    assert headers["content-type"] == "application/json"  # type: ignore[index]
    assert json.loads(request["body"]) == {"model": "m"}  # type: ignore[arg-type]


def test_nobody_listening_is_engine_unavailable() -> None:
    with pytest.raises(EngineUnavailable):
        anyio.run(_open, make_upstream(f"http://127.0.0.1:{free_port()}"))


def test_an_engine_slower_than_the_read_timeout_is_upstream_timeout(engine) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UpstreamTimeout):
        anyio.run(_open, make_upstream(engine[0], read_timeout_s=0.3), "m", "/slow")


def test_a_body_cut_short_is_upstream_error(broken_engine: str) -> None:
    with pytest.raises(UpstreamError):
        anyio.run(_open, make_upstream(broken_engine))


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (aiohttp.ConnectionTimeoutError("slow connect"), EngineUnavailable),
        (aiohttp.SocketTimeoutError("slow read"), UpstreamTimeout),
        (TimeoutError(), UpstreamTimeout),
        (aiohttp.ServerDisconnectedError(), UpstreamError),
        (aiohttp.ClientPayloadError("broken"), UpstreamError),
    ],
)
def test_client_errors_map_to_appliance_errors(exc: Exception, expected: type) -> None:
    with pytest.raises(expected), map_upstream_exceptions("m"):
        raise exc


def test_unrouted_model_is_not_found(engine) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ModelNotFound):
        anyio.run(_open, make_upstream(engine[0]), "other")


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (400, b'{"error": {"message": "too long"}}', InvalidRequest),
        (422, b'{"message": "bad field"}', InvalidRequest),
        (404, b"", ModelNotFound),
        (401, b"", UpstreamError),
        (503, b"", EngineUnavailable),
        (500, b"Traceback (most recent call last)", UpstreamError),
    ],
)
def test_status_errors(status: int, body: bytes, expected: type) -> None:
    error = upstream_status_error("m", status, body)
    assert isinstance(error, expected)
    assert "Traceback" not in error.message


def test_engine_4xx_message_is_passed_on() -> None:
    error = upstream_status_error("m", 400, b'{"error": {"message": "context too long"}}')
    assert error.message == "context too long"
    assert upstream_status_error("m", 400, b"not json").message == (
        "the engine rejected the request"
    )


def test_check_replicas_reports_each_replica_and_tells_the_observer(engine) -> None:  # type: ignore[no-untyped-def]
    url = engine[0]
    dead = f"http://127.0.0.1:{free_port()}"
    seen: list[tuple[str, str, bool]] = []
    upstream = Upstream(
        {"m": [f"{url}/up", dead, f"{url}/up2"], "n": [f"{url}/sick"]},
        api_key="shared", connect_timeout_s=1, read_timeout_s=1,
        on_health=lambda model, replica, healthy: seen.append((model, replica, healthy)),
    )  # fmt: skip

    async def check() -> tuple[list[ReplicaState], float, bool, bool]:
        try:
            started = time.monotonic()
            states = await upstream.check_replicas()
            took = time.monotonic() - started
            return states, took, await upstream.healthy("m"), await upstream.healthy("n")
        finally:
            await upstream.aclose()

    states, took, m_healthy, n_healthy = anyio.run(check)
    assert [(s.model, s.url, s.healthy) for s in states] == [
        ("m", f"{url}/up", True),
        ("m", dead, False),
        ("m", f"{url}/up2", True),
        ("n", f"{url}/sick", False),
    ]
    assert all(s.outstanding == 0 and not s.circuit_open for s in states)
    assert took < 0.9  # side by side: two 0.5 s checks did not add up
    assert (m_healthy, n_healthy) == (True, False)  # a model is healthy if any replica is
    assert set(seen) == {(s.model, s.url, s.healthy) for s in states}
    assert len(seen) == 4 + 3 + 1  # check_replicas, then healthy("m") and healthy("n")


def test_health_loop_checks_at_once(engine) -> None:  # type: ignore[no-untyped-def]
    seen: list[tuple[str, str, bool]] = []
    upstream = Upstream(
        {"m": f"{engine[0]}/sick"}, api_key="shared", connect_timeout_s=1, read_timeout_s=1,
        routing=RoutingSettings(health_interval_s=3600),
        on_health=lambda model, replica, healthy: seen.append((model, replica, healthy)),
    )  # fmt: skip

    async def run() -> None:
        upstream.start()
        try:
            with anyio.fail_after(5):
                while not seen:
                    await anyio.sleep(0.02)
        finally:
            await upstream.aclose()

    anyio.run(run)
    assert seen == [("m", f"{engine[0]}/sick", False)]
    assert not upstream.pool.replicas("m")[0].healthy
