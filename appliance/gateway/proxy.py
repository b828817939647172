"""The admitted path of an OpenAI request: validate, authorize, record, forward."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request, Response

from appliance.audit.log import Appended
from appliance.audit.receipts import RECEIPT_HEADER
from appliance.audit.records import AuditEvent, AuditRecord, Outcome
from appliance.errors import (
    ApplianceError,
    InvalidRequest,
    ModelNotFound,
    PermissionDenied,
    UpstreamError,
)
from appliance.gateway.adapter_models import ServedAdapter, adapter_base, on_adapter
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
from appliance.gateway.receipting import issue_receipt, with_answer_commitment
from appliance.gateway.response_store import load_stored_response
from appliance.gateway.responses import (
    ResponseEvents,
    continued_input,
    mint_response_id,
    response_answer,
    response_content,
    response_params,
    response_usage,
    upstream_payload,
)
from appliance.gateway.schemas import (
    OpenAIRequest,
    ResponseRequest,
    audited_params,
    check_embedding_batch,
    check_removed_fields,
    check_token_budget,
    reserve_tokens,
    validate_request,
)
from appliance.gateway.scoring import rerank_params
from appliance.gateway.services import GatewayServices
from appliance.gateway.sse import Usage, usage_of
from appliance.gateway.streaming import ChatEvents, RelayResponse, StreamEvents, StreamRelay
from appliance.gateway.upstream import map_upstream_exceptions, upstream_status_error
from appliance.identity.policy import adapter_denial_reason, denial_reason
from appliance.identity.principal import Principal
from appliance.limits import Lease, request_priority
from appliance.telemetry import RequestObservation

__all__ = ["proxy_openai", "proxy_responses"]


@dataclass(frozen=True)
class _Dialect:
    """How one API's bodies are read for the audit: what of the request is sealed, and
    where the answer keeps its usage and content, whole or streamed."""

    request_content: Callable[[dict[str, Any]], dict[str, Any]]
    usage: Callable[[dict[str, Any] | None], Usage | None]
    answer: Callable[[dict[str, Any] | None], Answer | None]
    events: Callable[[], StreamEvents]
    # Chat and text completions stream usage only when asked (stream_options).
    asks_usage: bool


_COMPLETIONS = _Dialect(request_content, usage_of, answer_of, ChatEvents, asks_usage=True)
_RESPONSES = _Dialect(
    response_content, response_usage, response_answer, ResponseEvents, asks_usage=False
)


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


async def _timed_write_audit(services: GatewayServices, record: AuditRecord) -> Appended | None:
    if services.telemetry is None:
        return await write_audit(services, record)
    return await services.telemetry.timed_audit(write_audit(services, record))


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
    cap = (
        payload.get("max_completion_tokens")
        or payload.get("max_tokens")
        or payload.get("max_output_tokens")
    )
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


async def _read(
    request: Request, services: GatewayServices, schema: type[OpenAIRequest]
) -> tuple[dict[str, Any], OpenAIRequest]:
    """The body, validated against ``schema`` and the gateway's limits."""
    gateway = services.settings.gateway
    payload = await read_json_body(
        request, max_bytes=gateway.max_body_bytes, limits=services.json_limits
    )
    parsed = validate_request(schema, payload)
    check_removed_fields(payload)
    check_embedding_batch(parsed, gateway.max_embedding_inputs)
    check_token_budget(payload, parsed, gateway.max_request_tokens)
    return payload, parsed


def _route(
    services: GatewayServices,
    request: Request,
    principal: Principal,
    context: RequestContext,
    payload: dict[str, Any],
    parsed: OpenAIRequest,
) -> tuple[dict[str, Any], OpenAIRequest]:
    """Aliases and policy routes pick the served model; policy applies to that one."""
    target = services.upstream.resolve(parsed.model, roles=principal.roles, headers=request.headers)
    if target != parsed.model:
        payload = {**payload, "model": target}
        parsed = parsed.model_copy(update={"model": target})
    context.model = parsed.model
    return payload, parsed


def _authorize(services: GatewayServices, principal: Principal, model: str) -> ServedAdapter | None:
    """Model policy, then existence; for ``<model>:<adapter>`` the served model's policy,
    then the adapter (:mod:`appliance.gateway.adapter_models`) and its teams."""
    base = adapter_base(model, services.upstream.serves)
    served = base or model
    # Policy before existence: a caller learns nothing about models it may not use.
    refusal = denial_reason(principal, served, services.settings.policy.role_models)
    if refusal is not None:
        raise PermissionDenied(refusal)
    if not services.upstream.serves(served):
        raise ModelNotFound(f"model {model!r} does not exist")
    if base is None:
        return None
    adapter = services.adapters.find(model)
    prefix = services.settings.oidc.team_group_prefix
    refusal = adapter_denial_reason(principal, model, adapter.teams, prefix)
    if refusal is not None:
        raise PermissionDenied(refusal, code="adapter_not_allowed")
    return adapter


async def proxy_openai(
    request: Request,
    *,
    services: GatewayServices,
    principal: Principal,
    context: RequestContext,
    schema: type[OpenAIRequest],
    path: str,
) -> Response:
    """Chat completions, completions, embeddings, rerank and score."""
    payload, parsed = await _read(request, services, schema)
    payload, parsed = _route(services, request, principal, context, payload, parsed)
    context.params = {**audited_params(payload), **tool_params(payload),
                      **embedding_params(payload), **rerank_params(payload)}  # fmt: skip
    parsed = on_adapter(context, parsed, _authorize(services, principal, parsed.model))
    return await _forward(
        request, services=services, principal=principal, context=context,
        payload=payload, parsed=parsed, path=path, dialect=_COMPLETIONS,
    )  # fmt: skip


async def proxy_responses(
    request: Request, *, services: GatewayServices, principal: Principal, context: RequestContext
) -> Response:
    """``POST /v1/responses``: stored and continued by the gateway, never by the engine
    (:mod:`appliance.gateway.responses`)."""
    payload, parsed = await _read(request, services, ResponseRequest)
    payload, parsed = _route(services, request, principal, context, payload, parsed)
    assert isinstance(parsed, ResponseRequest)
    response_id = mint_response_id(context.request_id)
    previous = parsed.previous_response_id
    context.params = response_params(
        payload, response_id=response_id, store=parsed.store, previous=previous
    )
    parsed = on_adapter(context, parsed, _authorize(services, principal, parsed.model))
    if previous is not None:
        stored = await load_stored_response(services, principal.subject, previous)
        payload = {**payload, "input": continued_input(stored.input, stored.output, parsed.input)}
        check_token_budget(payload, parsed, services.settings.gateway.max_request_tokens)
    return await _forward(
        request, services=services, principal=principal, context=context,
        payload=upstream_payload(payload, response_id=response_id), parsed=parsed,
        path="/v1/responses", dialect=_RESPONSES,
    )  # fmt: skip


async def _forward(
    request: Request,
    *,
    services: GatewayServices,
    principal: Principal,
    context: RequestContext,
    payload: dict[str, Any],
    parsed: OpenAIRequest,
    path: str,
    dialect: _Dialect,
) -> Response:
    """Admit (limits), record the request, relay the engine's answer, record it."""
    settings = services.settings
    reserve = reserve_tokens(payload, parsed, settings.limits.default_max_tokens)
    lease, forwarded = await _admit(services, principal, payload, reserve)
    if parsed.stream and dialect.asks_usage:
        forwarded, strip_usage = _with_usage_requested(forwarded)
    else:
        strip_usage = False
    observed = _observe(services, request, context, path, payload)
    # Fail closed: without a durable request record, no engine sees the request.
    try:
        request_leaf = await _timed_write_audit(
            services,
            audit_record(
                services, request, context,
                event=AuditEvent.REQUEST, status_code=0, outcome=Outcome.ACCEPTED,
                content=dialect.request_content(payload),
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
    ) -> str | None:
        """Settle, observe, and write the completion record; the receipt of an answer."""
        if lease is not None:
            await lease.settle(_used_tokens(outcome, usage))
        if observed is not None:
            observed.finish(
                outcome.value,
                status,
                usage.prompt_tokens if usage else None,
                usage.completion_tokens if usage else None,
            )
        record = audit_record(
            services, request, context,
            event=AuditEvent.COMPLETION, status_code=status, outcome=outcome,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            content=answer_content(answer), extra_params=answer_params(answer),
        )  # fmt: skip
        commitment = None
        if outcome is Outcome.OK:  # only an answer gets a receipt, so only it a commitment
            record, commitment = with_answer_commitment(record)
        completion_leaf = await _timed_write_audit(services, record)
        if outcome is not Outcome.OK:
            return None
        return issue_receipt(
            services, context.request_id, request_leaf, completion_leaf, commitment
        )

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
        receipt = await finish(Outcome.OK, dialect.usage(body_json), 200, dialect.answer(body_json))
        headers = {RECEIPT_HEADER: receipt} if receipt is not None else None
        return Response(content=body, status_code=200, media_type=media_type, headers=headers)

    # RelayResponse settles the lease even if the client leaves before the first byte.
    return RelayResponse(
        StreamRelay(
            upstream,
            model=parsed.model,
            strip_usage_chunk=strip_usage,
            on_finish=finish,
            on_first_chunk=observed.first_chunk if observed is not None else None,
            events=dialect.events(),
        ),
        media_type=media_type,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
