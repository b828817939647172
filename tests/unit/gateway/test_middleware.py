"""appliance/gateway/middleware.py: request ids, the generic 500 and the 431 refusal,
both rendered by the one error renderer."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from appliance.gateway.middleware import (
    REQUEST_ID_HEADER,
    HeaderLimitMiddleware,
    RequestIdMiddleware,
    UnexpectedErrorMiddleware,
)


async def ok(_request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def boom(_request: Request) -> PlainTextResponse:
    raise RuntimeError("secret internal detail /etc/appliance")


def client() -> TestClient:
    # As in create_app: headers checked first, then the id, then the 500 guard.
    app = Starlette(
        routes=[Route("/ok", ok), Route("/boom", boom)],
        middleware=[
            Middleware(HeaderLimitMiddleware, max_bytes=1024),
            Middleware(RequestIdMiddleware),
            Middleware(UnexpectedErrorMiddleware),
        ],
    )
    return TestClient(app, raise_server_exceptions=False)


def test_unexpected_error_is_an_openai_shaped_500_with_the_request_id() -> None:
    response = client().get("/boom", headers={REQUEST_ID_HEADER: "req-12345678"})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    assert response.headers[REQUEST_ID_HEADER] == "req-12345678"
    assert response.json() == {
        "error": {
            "message": "internal error (request id req-12345678)",
            "type": "server_error",
            "param": None,
            "code": "internal_error",
        }
    }
    assert "secret" not in response.text


def test_oversized_headers_are_an_openai_shaped_431_that_closes() -> None:
    response = client().get("/ok", headers={"x-big": "a" * 2048})
    assert response.status_code == 431
    assert response.headers["connection"] == "close"
    assert response.json() == {
        "error": {
            "message": "request headers exceed 1024 bytes",
            "type": "invalid_request_error",
            "param": None,
            "code": "headers_too_large",
        }
    }


def test_small_headers_pass_and_carry_a_request_id() -> None:
    response = client().get("/ok")
    assert response.text == "ok"
    assert len(response.headers[REQUEST_ID_HEADER]) == 32
