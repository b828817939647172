"""The HTTP client to vLLM engines, and the one place their failures are translated
into :mod:`appliance.errors` (as httpx maps httpcore errors)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx

from appliance.errors import (
    ApplianceError,
    EngineUnavailable,
    InvalidRequest,
    ModelNotFound,
    UpstreamError,
    UpstreamTimeout,
)

__all__ = ["Upstream", "map_upstream_exceptions", "upstream_status_error"]


@contextmanager
def map_upstream_exceptions(model: str) -> Iterator[None]:
    try:
        yield
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        # Checked before TimeoutException: a connect timeout means no reachable engine.
        raise EngineUnavailable(f"no engine for {model} is reachable") from exc
    except httpx.TimeoutException as exc:
        raise UpstreamTimeout(f"the engine for {model} did not answer in time") from exc
    except httpx.HTTPError as exc:
        raise UpstreamError(f"the engine for {model} failed") from exc


def _upstream_message(body: bytes) -> str | None:
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    if not isinstance(parsed, dict):
        return None
    error = parsed.get("error", parsed)
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])[:2000]
    if isinstance(parsed.get("message"), str):  # older vLLM ErrorResponse
        return str(parsed["message"])[:2000]
    return None


def upstream_status_error(model: str, status: int, body: bytes) -> ApplianceError:
    """An engine's non-200 answer as our error. The engine's 4xx messages are about the
    client's request (context too long, bad parameter) and are passed on; its 5xx
    details stay in the gateway's logs."""
    if status == 404:
        return ModelNotFound(f"model {model} is not served")
    if status in (400, 422):
        return InvalidRequest(_upstream_message(body) or "the engine rejected the request")
    if status in (401, 403):
        # The gateway's shared secret was refused: a deployment fault, not the client's.
        return UpstreamError(f"the engine for {model} refused the gateway")
    if status == 503:
        return EngineUnavailable(f"the engine for {model} is not ready")
    return UpstreamError(f"the engine for {model} failed (status {status})")


class Upstream:
    """Routes a model name to its engine's base URL and sends requests there."""

    def __init__(
        self,
        routes: Mapping[str, str],
        *,
        api_key: str,
        connect_timeout_s: float,
        read_timeout_s: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self._routes = dict(routes)
        self._client = httpx.AsyncClient(
            headers={"Authorization": f"Bearer {api_key}", "Accept-Encoding": "identity"},
            timeout=httpx.Timeout(read_timeout_s, connect=connect_timeout_s),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=100),
            transport=transport,
        )

    def models(self) -> list[str]:
        return list(self._routes)

    def serves(self, model: str) -> bool:
        return model in self._routes

    async def open_stream(
        self, model: str, path: str, payload: dict[str, Any], *, request_id: str
    ) -> httpx.Response:
        """POST ``payload`` to the model's engine; the caller must close the response."""
        base = self._routes.get(model)
        if base is None:
            raise ModelNotFound(f"model {model} is not served")
        request = self._client.build_request(
            "POST",
            f"{base}{path}",
            content=json.dumps(payload, ensure_ascii=False).encode("utf-8"),
            headers={"Content-Type": "application/json", "X-Request-Id": request_id},
        )
        with map_upstream_exceptions(model):
            return await self._client.send(request, stream=True)

    async def healthy(self, model: str) -> bool:
        base = self._routes.get(model)
        if base is None:
            return False
        try:
            response = await self._client.get(f"{base}/health", timeout=5.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def aclose(self) -> None:
        await self._client.aclose()
