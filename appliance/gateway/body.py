"""Reading a JSON request body with a size limit and clear errors (parsing and its
limits: :mod:`appliance.gateway.json_guard`)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from appliance.errors import InvalidRequest, RequestTooLarge, UnsupportedMediaType
from appliance.gateway.json_guard import JsonLimits, parse_json

__all__ = ["read_json_body"]


async def read_json_body(request: Request, *, max_bytes: int, limits: JsonLimits) -> Any:
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise UnsupportedMediaType("Content-Type must be application/json")
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise InvalidRequest("invalid Content-Length")
        if int(declared) > max_bytes:
            raise RequestTooLarge(f"request body exceeds {max_bytes} bytes")
    # Count as we read too: chunked bodies carry no Content-Length.
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise RequestTooLarge(f"request body exceeds {max_bytes} bytes")
    return parse_json(bytes(body), limits)
