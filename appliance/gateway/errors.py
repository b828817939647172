"""One renderer for every error: OpenAI-shaped JSON, the right status, no internals,
and counted (``appliance_errors_total``) by the code the client gets.

Requests to the JSON APIs (``/v1/``, ``/audit/``, ``/admin/``, ``/ui/api/``) refused
before they were admitted get a denial record here, so every request, allowed or not,
leaves an audit trace.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from appliance.audit.records import AuditEvent, Outcome
from appliance.errors import (
    ApplianceError,
    AuditUnavailable,
    AuthenticationFailed,
    InvalidRequest,
    ModelNotFound,
    PermissionDenied,
    RateLimited,
)
from appliance.gateway.auditing import audit_record, write_audit
from appliance.gateway.context import request_context
from appliance.telemetry import Telemetry

__all__ = ["count_error", "error_response", "install_error_handlers", "render_error"]


def error_response(error: ApplianceError) -> JSONResponse:
    headers = {}
    if isinstance(error, AuthenticationFailed):
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(error, RateLimited):
        headers["Retry-After"] = str(error.retry_after_s)
    return JSONResponse(error.to_openai(), status_code=error.status_code, headers=headers)


# Every JSON API: inference, audit, admin, and the browser pages' own APIs. Pages and
# unknown paths (scanners' 404s) are not requests to refuse, so leave no record.
_AUDITED_APIS = ("/v1/", "/v2/", "/rerank", "/score", "/audit/", "/admin/", "/ui/api/")


def _outcome(error: ApplianceError) -> Outcome:
    if isinstance(error, AuthenticationFailed | PermissionDenied | RateLimited):
        return Outcome.DENIED
    return Outcome.INVALID


async def _audit_refusal(request: Request, error: ApplianceError) -> ApplianceError:
    """Record a refused API request; if that fails, the answer becomes 503."""
    if not request.url.path.startswith(_AUDITED_APIS):
        return error
    context = request_context(request)
    if context.admitted:
        return error  # the route already wrote this request's completion record
    services = getattr(request.app.state, "services", None)
    if services is None:
        return error
    record = audit_record(
        services,
        request,
        context,
        event=AuditEvent.DENIED,
        status_code=error.status_code,
        outcome=_outcome(error),
        denial_reason=f"{error.code}: {error.message}"[:1000],
    )
    try:
        await write_audit(services, record)
    except AuditUnavailable as unavailable:
        return unavailable
    return error


def _telemetry(app: object) -> Telemetry | None:
    # The services exist once the lifespan has started; an error before that (or in an
    # app built without them, as in unit tests) is rendered but not counted.
    services = getattr(getattr(app, "state", None), "services", None)
    telemetry = getattr(services, "telemetry", None)
    return telemetry if isinstance(telemetry, Telemetry) else None


def count_error(app: object, error: ApplianceError) -> None:
    """Count an error response of ``app`` by type and code (metrics)."""
    telemetry = _telemetry(app)
    if telemetry is not None:
        telemetry.metrics.errors.labels(type=error.error_type, code=error.code).inc()


def render_error(app: object, error: ApplianceError) -> JSONResponse:
    """The response for ``error``, counted. Every error response the gateway sends is
    made here: the exception handlers below, the generic 500 and the 431 in
    :mod:`appliance.gateway.middleware`."""
    count_error(app, error)
    return error_response(error)


def _count_auth_failure(request: Request, error: ApplianceError) -> None:
    telemetry = _telemetry(request.app)
    if telemetry is not None and isinstance(error, AuthenticationFailed):
        telemetry.metrics.auth_failures.labels(reason=error.code).inc()


async def _appliance_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApplianceError)
    _count_auth_failure(request, exc)
    # Counted as sent: a refusal whose denial record failed goes out as 503.
    return render_error(request.app, await _audit_refusal(request, exc))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    error: ApplianceError
    if exc.status_code == 404:
        error = ModelNotFound("no such route", code="not_found")
    elif exc.status_code == 405:
        error = InvalidRequest("method not allowed", code="method_not_allowed")
        error.status_code = 405
    else:
        error = InvalidRequest(str(exc.detail), code="http_error")
        error.status_code = exc.status_code
    return render_error(request.app, await _audit_refusal(request, error))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    param = ".".join(str(part) for part in first.get("loc", ())) or None
    error = InvalidRequest(f"invalid field {param}: {first.get('msg')}", param=param)
    return render_error(request.app, await _audit_refusal(request, error))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApplianceError, _appliance_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
