from __future__ import annotations

import json

import anyio
import httpx
import pytest

from appliance.errors import (
    EngineUnavailable,
    InvalidRequest,
    ModelNotFound,
    UpstreamError,
    UpstreamTimeout,
)
from appliance.gateway.upstream import Upstream, upstream_status_error


def make_upstream(handler) -> Upstream:  # type: ignore[no-untyped-def]
    return Upstream(
        {"m": "http://engine:8100"},
        api_key="shared",
        connect_timeout_s=1,
        read_timeout_s=1,
        transport=httpx.MockTransport(handler),
    )


async def _open(upstream: Upstream, model: str = "m") -> httpx.Response:
    response = await upstream.open_stream(model, "/v1/chat/completions", {"model": model},
                                          request_id="req-1")  # fmt: skip
    await response.aread()
    await response.aclose()
    await upstream.aclose()
    return response


def test_sends_secret_request_id_and_json() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True})

    response = anyio.run(_open, make_upstream(handler))
    assert response.status_code == 200
    (request,) = seen
    assert request.url == "http://engine:8100/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer shared"
    assert request.headers["x-request-id"] == "req-1"
    assert request.headers["accept-encoding"] == "identity"
    assert json.loads(request.content) == {"model": "m"}


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (httpx.ConnectError("refused"), EngineUnavailable),
        (httpx.ConnectTimeout("slow"), EngineUnavailable),
        (httpx.ReadTimeout("slow"), UpstreamTimeout),
        (httpx.RemoteProtocolError("broken"), UpstreamError),
    ],
)
def test_transport_errors_map_to_appliance_errors(exc: Exception, expected: type) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    with pytest.raises(expected):
        anyio.run(_open, make_upstream(handler))


def test_unrouted_model_is_not_found() -> None:
    with pytest.raises(ModelNotFound):
        anyio.run(_open, make_upstream(lambda r: httpx.Response(200)), "other")


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
