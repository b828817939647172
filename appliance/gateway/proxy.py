"""An OpenAI request's way in: read and validate the body, pick the model (aliases,
policy routes, adapters, external providers), authorize, then hand it to
:func:`appliance.gateway.relay.forward`."""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response

from appliance.errors import InvalidRequest, ModelNotFound, PermissionDenied
from appliance.gateway.adapter_models import ServedAdapter, adapter_base, on_adapter
from appliance.gateway.auditing import embedding_params, tool_params
from appliance.gateway.body import read_json_body
from appliance.gateway.context import RequestContext
from appliance.gateway.egress_call import plan_external
from appliance.gateway.relay import COMPLETIONS, RESPONSES, forward
from appliance.gateway.response_store import load_stored_response
from appliance.gateway.responses import (
    continued_input,
    mint_response_id,
    response_params,
    upstream_payload,
)
from appliance.gateway.schemas import (
    OpenAIRequest,
    ResponseRequest,
    audited_params,
    check_embedding_batch,
    check_removed_fields,
    check_token_budget,
    validate_request,
)
from appliance.gateway.scoring import rerank_params
from appliance.gateway.services import GatewayServices
from appliance.identity.policy import adapter_denial_reason, denial_reason
from appliance.identity.principal import Principal

__all__ = ["proxy_openai", "proxy_responses"]


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
    """Chat completions, completions, embeddings, rerank and score; a chat completion
    for an external provider's model goes through :func:`plan_external` first."""
    payload, parsed = await _read(request, services, schema)
    provider = services.egress.provider_of(parsed.model) if services.egress else None
    if provider is None:
        payload, parsed = _route(services, request, principal, context, payload, parsed)
    context.model = parsed.model
    context.params = {**audited_params(payload), **tool_params(payload),
                      **embedding_params(payload), **rerank_params(payload)}  # fmt: skip
    if provider is not None and services.egress is not None:
        plan = await plan_external(
            request, egress=services.egress, principal=principal, context=context,
            payload=payload, parsed=parsed, provider=provider, path=path,
            settings=services.settings, clock=services.clock,
        )  # fmt: skip
        if plan.destination is not None:
            return await forward(
                request, services=services, principal=principal, context=context,
                payload=plan.payload, parsed=plan.parsed, path=path, dialect=COMPLETIONS,
                destination=plan.destination,
            )  # fmt: skip
        # Routed to the in-house fallback model: from here on, an in-house request.
        payload, parsed = _route(services, request, principal, context, plan.payload, plan.parsed)
    parsed = on_adapter(context, parsed, _authorize(services, principal, parsed.model))
    return await forward(
        request, services=services, principal=principal, context=context,
        payload=payload, parsed=parsed, path=path, dialect=COMPLETIONS,
    )  # fmt: skip


async def proxy_responses(
    request: Request, *, services: GatewayServices, principal: Principal, context: RequestContext
) -> Response:
    """``POST /v1/responses``: stored and continued by the gateway, never by the engine
    (:mod:`appliance.gateway.responses`)."""
    payload, parsed = await _read(request, services, ResponseRequest)
    if services.egress is not None and services.egress.provider_of(parsed.model) is not None:
        raise InvalidRequest(
            f"model {parsed.model} is an external provider's: it serves /v1/chat/completions only",
            param="model",
        )
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
    return await forward(
        request, services=services, principal=principal, context=context,
        payload=upstream_payload(payload, response_id=response_id), parsed=parsed,
        path="/v1/responses", dialect=RESPONSES,
    )  # fmt: skip
