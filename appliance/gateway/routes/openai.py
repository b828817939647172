"""The OpenAI-compatible API."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from appliance.gateway.deps import ContextDep, PrincipalDep, ServicesDep
from appliance.gateway.proxy import proxy_openai, proxy_responses
from appliance.gateway.response_store import load_stored_response
from appliance.gateway.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    RerankRequest,
    ScoreRequest,
)
from appliance.identity.policy import adapter_denial_reason, allowed_models, is_model_allowed

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["openai"])


@router.post("/chat/completions", summary="Chat completion (streaming or not)")
async def chat_completions(
    request: Request, principal: PrincipalDep, services: ServicesDep, context: ContextDep
) -> Response:
    return await proxy_openai(
        request,
        services=services,
        principal=principal,
        context=context,
        schema=ChatCompletionRequest,
        path="/v1/chat/completions",
    )


@router.post("/completions", summary="Text completion (streaming or not)")
async def completions(
    request: Request, principal: PrincipalDep, services: ServicesDep, context: ContextDep
) -> Response:
    return await proxy_openai(
        request,
        services=services,
        principal=principal,
        context=context,
        schema=CompletionRequest,
        path="/v1/completions",
    )


@router.post("/embeddings", summary="Embeddings of one input or a batch")
async def embeddings(
    request: Request, principal: PrincipalDep, services: ServicesDep, context: ContextDep
) -> Response:
    return await proxy_openai(
        request,
        services=services,
        principal=principal,
        context=context,
        schema=EmbeddingRequest,
        path="/v1/embeddings",
    )


@router.post("/rerank", summary="Documents ranked by relevance to a query (Jina/Cohere shape)")
async def rerank(
    request: Request, principal: PrincipalDep, services: ServicesDep, context: ContextDep
) -> Response:
    return await proxy_openai(
        request,
        services=services,
        principal=principal,
        context=context,
        schema=RerankRequest,
        path="/v1/rerank",
    )


@router.post("/score", summary="A relevance score for each query and document pair")
async def score(
    request: Request, principal: PrincipalDep, services: ServicesDep, context: ContextDep
) -> Response:
    return await proxy_openai(
        request,
        services=services,
        principal=principal,
        context=context,
        schema=ScoreRequest,
        path="/v1/score",
    )


@router.post("/responses", summary="Responses API (streaming or not), stored by the gateway")
async def responses(
    request: Request, principal: PrincipalDep, services: ServicesDep, context: ContextDep
) -> Response:
    return await proxy_responses(request, services=services, principal=principal, context=context)


@router.get("/responses/{response_id}", summary="One of the caller's own stored responses")
async def stored_response(
    response_id: str, principal: PrincipalDep, services: ServicesDep
) -> dict[str, Any]:
    """Opened from the audit log with the caller's key: only its owner gets it; anyone
    else gets the 404 a missing id gets."""
    stored = await load_stored_response(
        services, principal.subject, response_id, param="response_id"
    )
    return stored.view()


@router.get("/models", summary="The models the caller may use, and aliases of them")
async def list_models(
    request: Request, principal: PrincipalDep, services: ServicesDep
) -> dict[str, object]:
    role_models = services.settings.policy.role_models
    upstream = services.upstream
    names = allowed_models(principal, upstream.models(), role_models)
    # What each served model does (gateway.upstreams[].kind): chat or embedding.
    kinds = {route.model: route.kind for route in services.settings.effective_upstreams()}
    # OpenAI's Model carries `created` (Unix seconds); like vLLM, we answer with now.
    created = int(services.clock().timestamp())
    data: list[dict[str, object]] = [
        {"id": name, "object": "model", "created": created, "owned_by": "appliance",
         "kind": kinds.get(name, "chat")}
        for name in names
    ]  # fmt: skip
    # An alias is listed when a request for it would be served for this caller: it
    # resolves (alias, then policy routes, as for a completion) to a served model the
    # caller may use. ``parent`` names that model, as vLLM does for adapters.
    for alias in sorted(upstream.routing.aliases):
        if alias in names:
            continue  # listed already
        target = upstream.resolve(alias, roles=principal.roles, headers=request.headers)
        if upstream.serves(target) and is_model_allowed(principal, target, role_models):
            data.append({"id": alias, "object": "model", "created": created,
                         "owned_by": "appliance", "parent": target,
                         "kind": kinds.get(target, "chat")})  # fmt: skip
    # A model's adapters (``<model>:<adapter>``), each listed to its own teams only;
    # ``parent`` names the model it runs on, as vLLM lists adapters.
    prefix = services.settings.oidc.team_group_prefix
    for name in names:
        for adapter in services.adapters.of_parent(name):
            if adapter_denial_reason(principal, adapter.model, adapter.teams, prefix) is None:
                data.append({"id": adapter.model, "object": "model", "created": created,
                             "owned_by": "appliance", "parent": name,
                             "kind": kinds.get(name, "chat")})  # fmt: skip
    return {"object": "list", "data": data}
