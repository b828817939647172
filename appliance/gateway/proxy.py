"""The admitted path of an OpenAI request: validate, authorize, record, forward."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request, Response

from appliance.audit.records import AuditEvent, AuditRecord, Outcome
from appliance.errors import (
    ApplianceError,
    InvalidRequest,
    ModelNotFound,
    PermissionDenied,
    UpstreamError,
)
from appliance.gateway.auditing import (
    Answer,
    answer_content,
    answer_of,
    answer_params,
    audit_record,
    embedding_params,
    request_content,
    tool_params,
    write_audit,
)
from appliance.gateway.body import read_json_body
from appliance.gateway.context import RequestContext
from appliance.gateway.schemas import (
    OpenAIRequest,
    audited_params,
    check_embedding_batch,
    check_token_budget,
    reserve_tokens,
    validate_request,
)
from appliance.gateway.services import GatewayServices
from appliance.gateway.sse import Usage, usage_of
from appliance.gateway.streaming import RelayResponse, StreamRelay
from appliance.gateway.upstream import map_upstream_exceptions, upstream_status_error
from appliance.identity.policy import denial_reason
from appliance.identity.principal import Principal
from appliance.limits import Lease, request_priority
from appliance.telemetry import RequestObservation

__all__ = ["proxy_openai"]


async def _admit(
    services: GatewayServices, principal: Principal, payload: dict[str, Any], reserve: int
) -> tuple[Lease | None, dict[str, Any]]:
    """Reserve ``reserve`` tokens of quota (raises RateLimited) and set the role's
    engine priority."""
    limits = services.settings.limits
    lease = None
    if services.limiter is not None:
        lease = await services.limiter.admit(principal, reserve)
    # The role decides the engine priority, never the client: a client-sent one is
    # dropped, so nobody schedules themselves ahead of others.
    payload = {key: value for key, value in payload.items() if key != "priority"}
    priority = request_priority(principal.roles, limits.priority)
    if priority is not None:
        payload["priority"] = priority
    return lease, payload


async def _timed_write_audit(services: GatewayServices, record: AuditRecord) -> None:
    if services.telemetry is None:
        await write_audit(services, record)
    else:
        await services.telemetry.timed_audit(write_audit(services, record))


def _observe(
    services: GatewayServices,
    request: Request,
    context: RequestContext,
    path: str,
    payload: dict[str, Any],
) -> RequestObservation | None:
    """Start the request's span and in-flight metrics (no content goes in either)."""
    if services.telemetry is None:
        return None
    cap = payload.get("max_completion_tokens") or payload.get("max_tokens")
    return services.telemetry.request(
        path=path,
        model=str(payload.get("model")),
        request_id=context.request_id,
        headers=request.headers,
        stream=bool(payload.get("stream")),
        max_tokens=cap if isinstance(cap, int) and not isinstance(cap, bool) else None,
    )


def _used_tokens(outcome: Outcome, usage: Usage | None) -> int | None:
    """Tokens to settle a lease on: the engine's count; unknown after an answer was
    (maybe partly) generated keeps the reservation; an engine failure refunds it."""
    if usage is not None and (usage.prompt_tokens is not None or usage.completion_tokens):
        return (usage.prompt_tokens or 0) + (usage.completion_tokens or 0)
    if outcome in (Outcome.OK, Outcome.CLIENT_DISCONNECTED):
        return None
    return 0


def _engine_refusal(model: str, path: str, status: int, body: bytes) -> ApplianceError:
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


def _with_usage_requested(payload: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Ask the engine for a usage chunk if the client did not; say whether we did."""
    options = payload.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        return payload, False
    forwarded = dict(payload)
    forwarded["stream_options"] = {**(options or {}), "include_usage": True}
    return forwarded, True


async def proxy_openai(
    request: Request,
    *,
    services: GatewayServices,
    principal: Principal,
    context: RequestContext,
    schema: type[OpenAIRequest],
    path: str,
) -> Response:
    settings = services.settings
    gateway = settings.gateway
    payload = await read_json_body(
        request, max_bytes=gateway.max_body_bytes, limits=services.json_limits
    )
    parsed = validate_request(schema, payload)
    check_embedding_batch(parsed, gateway.max_embedding_inputs)
    check_token_budget(payload, parsed, gateway.max_request_tokens)
    # Aliases and policy routes pick the served model; policy applies to that one.
    target = services.upstream.resolve(parsed.model, roles=principal.roles, headers=request.headers)
    if target != parsed.model:
        payload = {**payload, "model": target}
        parsed = parsed.model_copy(update={"model": target})
    context.model = parsed.model
    context.params = {
        **audited_params(payload),
        **tool_params(payload),
        **embedding_params(payload),
    }

    # Policy before existence: a caller learns nothing about models it may not use.
    refusal = denial_reason(principal, parsed.model, settings.policy.role_models)
    if refusal is not None:
        raise PermissionDenied(refusal)
    if not services.upstream.serves(parsed.model):
        raise ModelNotFound(f"model {parsed.model!r} does not exist")

    reserve = reserve_tokens(payload, parsed, settings.limits.default_max_tokens)
    lease, forwarded = await _admit(services, principal, payload, reserve)
    if parsed.stream:
        forwarded, strip_usage = _with_usage_requested(forwarded)
    else:
        strip_usage = False
    observed = _observe(services, request, context, path, payload)
    # Fail closed: without a durable request record, no engine sees the request.
    try:
        await _timed_write_audit(
            services,
            audit_record(
                services, request, context,
                event=AuditEvent.REQUEST, status_code=0, outcome=Outcome.ACCEPTED,
                content=request_content(payload),
            ),
        )  # fmt: skip
    except BaseException:
        if lease is not None:
            await lease.settle(0)
        if observed is not None:
            observed.finish("audit_unavailable", 503)
        raise
    context.admitted = True

    async def finish(
        outcome: Outcome, usage: Usage | None, status: int, answer: Answer | None = None
    ) -> None:
        if lease is not None:
            await lease.settle(_used_tokens(outcome, usage))
        if observed is not None:
            observed.finish(
                outcome.value,
                status,
                usage.prompt_tokens if usage else None,
                usage.completion_tokens if usage else None,
            )
        await _timed_write_audit(
            services,
            audit_record(
                services, request, context,
                event=AuditEvent.COMPLETION, status_code=status, outcome=outcome,
                prompt_tokens=usage.prompt_tokens if usage else None,
                completion_tokens=usage.completion_tokens if usage else None,
                content=answer_content(answer), extra_params=answer_params(answer),
            ),
        )  # fmt: skip

    try:
        upstream = await services.upstream.open_stream(
            parsed.model,
            path,
            forwarded,
            request_id=context.request_id,
            headers=observed.outgoing_headers() if observed is not None else None,
        )
    except ApplianceError as error:
        await finish(Outcome.UPSTREAM_ERROR, None, error.status_code)
        raise

    if upstream.status_code != 200:
        try:
            with map_upstream_exceptions(parsed.model):
                body = await upstream.aread()
        finally:
            await upstream.aclose()
        refused = _engine_refusal(parsed.model, path, upstream.status_code, body)
        outcome = Outcome.INVALID if refused.status_code < 500 else Outcome.UPSTREAM_ERROR
        await finish(outcome, None, refused.status_code)
        raise refused

    media_type = upstream.headers.get("content-type", "application/json")
    if not parsed.stream:
        try:
            with map_upstream_exceptions(parsed.model):
                body = await upstream.aread()
        except ApplianceError as error:
            await finish(Outcome.UPSTREAM_ERROR, None, error.status_code)
            raise
        finally:
            await upstream.aclose()
        try:
            answer = json.loads(body)
        except ValueError as exc:
            await finish(Outcome.UPSTREAM_ERROR, None, 502)
            raise UpstreamError(f"the engine for {parsed.model} sent an unreadable answer") from exc
        body_json = answer if isinstance(answer, dict) else None
        await finish(Outcome.OK, usage_of(body_json), 200, answer_of(body_json))
        return Response(content=body, status_code=200, media_type=media_type)

    # RelayResponse settles the lease even if the client leaves before the first byte.
    return RelayResponse(
        StreamRelay(
            upstream,
            model=parsed.model,
            strip_usage_chunk=strip_usage,
            on_finish=finish,
            on_first_chunk=observed.first_chunk if observed is not None else None,
        ),
        media_type=media_type,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
