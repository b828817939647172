"""Engines' failures as our errors, in one place: a connection that fails, and an
engine's non-200 answer (as httpx maps httpcore errors). External providers'
(:mod:`appliance.gateway.providers`) reuse :data:`UNREACHABLE` and :func:`error_message`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp

from appliance.errors import (
    ApplianceError,
    EngineUnavailable,
    InvalidRequest,
    ModelNotFound,
    UpstreamError,
    UpstreamTimeout,
)

__all__ = [
    "UNREACHABLE",
    "engine_refusal",
    "error_message",
    "map_upstream_exceptions",
    "upstream_status_error",
]

# No reachable engine: refused, unresolvable, TLS handshake refused, connect timeout.
UNREACHABLE = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)


@contextmanager
def map_upstream_exceptions(model: str) -> Iterator[None]:
    try:
        yield
    except UNREACHABLE as exc:
        # Checked before the timeouts: a connect timeout means no reachable engine.
        raise EngineUnavailable(f"no engine for {model} is reachable") from exc
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise UpstreamTimeout(f"the engine for {model} did not answer in time") from exc
    except aiohttp.ClientError as exc:
        raise UpstreamError(f"the engine for {model} failed") from exc


def error_message(body: bytes) -> str | None:
    """The message of an OpenAI-shaped error body (or vLLM's older shape), if any."""
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
        return InvalidRequest(error_message(body) or "the engine rejected the request")
    if status in (401, 403):
        # The gateway's shared secret was refused: a deployment fault, not the client's.
        return UpstreamError(f"the engine for {model} refused the gateway")
    if status == 503:
        return EngineUnavailable(f"the engine for {model} is not ready")
    return UpstreamError(f"the engine for {model} failed (status {status})")


def engine_refusal(model: str, path: str, status: int, body: bytes) -> ApplianceError:
    """An engine's non-200 answer as our error. vLLM mounts a route only for the tasks
    its model runs, so an embeddings request to a chat model (or the reverse) meets
    FastAPI's bare ``404 {"detail": "Not Found"}``, and a pooling model without an
    embedding head says 501 "The model does not support Embeddings API": both are the
    caller's choice of model, a 400 naming it, not a missing model or an engine fault."""
    if status in (404, 501):
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        error = answer.get("error") if isinstance(answer, dict) else None
        if answer == {"detail": "Not Found"}:
            message = "Not Found"
        elif status == 501 and isinstance(error, dict) and isinstance(error.get("message"), str):
            message = error["message"][:200]
        else:
            message = None
        if message is not None:
            return InvalidRequest(
                f"model {model} does not serve {path} (the engine answered: {message})",
                param="model",
            )
    return upstream_status_error(model, status, body)
