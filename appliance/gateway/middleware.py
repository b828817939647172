"""ASGI middleware: a request id on every request and response; a generic 500; 431 for
oversized headers. Both refusals go through the one (counting) error renderer."""

from __future__ import annotations

import logging
import re
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from appliance.errors import ApplianceError, RequestHeadersTooLarge
from appliance.gateway.errors import render_error
from appliance.telemetry.logs import REQUEST_ID

__all__ = [
    "MAX_HEADER_BYTES",
    "REQUEST_ID_HEADER",
    "HeaderLimitMiddleware",
    "RequestIdMiddleware",
    "UnexpectedErrorMiddleware",
]

logger = logging.getLogger("appliance.gateway")

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID_NAME = REQUEST_ID_HEADER.encode()  # ASGI header names are lower-case bytes
_VALID_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


class RequestIdMiddleware:
    """Use the caller's X-Request-ID when it is well formed, else make one; echo it."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        supplied = ""
        for name, value in scope.get("headers", []):
            if name == _REQUEST_ID_NAME:
                supplied = value.decode("latin-1")
                break
        request_id = supplied if _VALID_ID.match(supplied) else uuid.uuid4().hex
        scope["request_id"] = request_id
        REQUEST_ID.set(request_id)  # JSON log lines carry it

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((_REQUEST_ID_NAME, request_id.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)


class UnexpectedErrorMiddleware:
    """Last line of defence: an exception nobody mapped becomes a generic 500 carrying
    the request id. Sits inside RequestIdMiddleware so the response has the header too
    (Starlette's own ServerErrorMiddleware sits outside all user middleware)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            request_id = scope.get("request_id", "unknown")
            logger.exception("unhandled error in request %s", request_id)
            if started:
                return  # mid-response: all we can do is end it; the server closes it
            error = ApplianceError(f"internal error (request id {request_id})")
            await render_error(scope.get("app"), error)(scope, receive, send)


MAX_HEADER_BYTES = 16 * 1024


class HeaderLimitMiddleware:
    """Refuse requests whose headers exceed 16 KiB with 431. uvicorn's default parser
    (httptools) sets no limit of its own; h11 refuses at the same size."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_HEADER_BYTES):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            size = sum(len(name) + len(value) + 4 for name, value in scope.get("headers", []))
            if size > self.max_bytes:
                refusal = render_error(
                    scope.get("app"),
                    RequestHeadersTooLarge(f"request headers exceed {self.max_bytes} bytes"),
                )
                refusal.headers["connection"] = "close"
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)
