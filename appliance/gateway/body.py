"""Reading a JSON request body with a size limit and clear errors."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from appliance.errors import InvalidRequest, RequestTooLarge, UnsupportedMediaType

__all__ = ["read_json_body"]


async def read_json_body(request: Request, *, max_bytes: int) -> Any:
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
    try:
        text = bytes(body).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest("request body is not valid UTF-8") from exc
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InvalidRequest("request body is not valid JSON") from exc
