"""The OpenAI-compatible API."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from fnmatch import fnmatchcase
from typing import Any

from fastapi import APIRouter, Request, Response

from appliance.gateway.context import request_context
from appliance.gateway.deps import (
    ContextDep,
    PrincipalDep,
    ServicesDep,
    current_principal,
    get_services,
)
from appliance.gateway.proxy import proxy_openai, proxy_responses
from appliance.gateway.response_store import load_stored_response
from appliance.gateway.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    OpenAIRequest,
    RerankRequest,
    ScoreRequest,
)
from appliance.identity.policy import (
    adapter_denial_reason,
    allowed_models,
    caller_teams,
    is_model_allowed,
)
from appliance.identity.principal import Principal
from appliance.settings.egress import ProviderSettings

__all__ = ["aliases_router", "router"]

router = APIRouter(prefix="/v1", tags=["openai"])


# The endpoints the gateway relays as they are, after identity, policy, limits and the
# audit record: (path under /v1, request body, summary, operation name).
_RELAYED: tuple[tuple[str, type[OpenAIRequest], str, str], ...] = (
    ("/chat/completions", ChatCompletionRequest, "Chat completion (streaming or not)",
     "chat_completions"),
    ("/completions", CompletionRequest, "Text completion (streaming or not)", "completions"),
    ("/embeddings", EmbeddingRequest, "Embeddings of one input or a batch", "embeddings"),
    ("/rerank", RerankRequest, "Documents ranked by relevance to a query (Jina/Cohere shape)",
     "rerank"),
    ("/score", ScoreRequest, "A relevance score for each query and document pair", "score"),
)  # fmt: skip


def _relay(schema: type[OpenAIRequest], path: str) -> Callable[..., Awaitable[Response]]:
    # The hot path takes no FastAPI dependencies: solving PrincipalDep (with its
    # ServicesDep and ContextDep) cost about 17 µs of CPU per request, a third of
    # FastAPI's share (docs/benchmarks.md, "Where a request's CPU goes"). The same
    # functions run in the same order, called directly.
    async def endpoint(request: Request) -> Response:
        services = await get_services(request)
        context = request_context(request)
        return await proxy_openai(
            request,
            services=services,
            principal=await current_principal(request, services, context),
            context=context,
            schema=schema,
            path=path,
        )

    return endpoint


for _path, _schema, _summary, _name in _RELAYED:
    router.add_api_route(
        _path, _relay(_schema, f"/v1{_path}"), methods=["POST"], summary=_summary, name=_name
    )

# vLLM also serves rerank and score at these paths, which Jina's and Cohere's clients
# call (Cohere's v2 API: /v2/rerank); the same relay, identity, policy and audit as the
# /v1 route, which is also the path the engine is sent.
_RELAYED_ALIASES: tuple[tuple[str, type[OpenAIRequest], str], ...] = (
    ("/rerank", RerankRequest, "/v1/rerank"),
    ("/v2/rerank", RerankRequest, "/v1/rerank"),
    ("/score", ScoreRequest, "/v1/score"),
)
aliases_router = APIRouter(tags=["openai"])
for _alias, _schema, _target in _RELAYED_ALIASES:
    aliases_router.add_api_route(
        _alias, _relay(_schema, _target), methods=["POST"],
        summary=f"The same as {_target}", name=_alias.strip("/").replace("/", "_") + "_alias",
    )  # fmt: skip


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
    # External providers' models (``<model>@<provider>``), to the teams and roles each
    # provider allows; ``owned_by`` names the provider, so nobody mistakes one for ours.
    if services.egress is not None:
        teams = caller_teams(principal, prefix)
        for name, provider in services.egress.clients.models():
            if _provider_admits(provider, teams, principal):
                data.append({"id": name, "object": "model", "created": created,
                             "owned_by": provider.name, "kind": "chat"})  # fmt: skip
    return {"object": "list", "data": data}


def _provider_admits(
    provider: ProviderSettings, teams: frozenset[str], principal: Principal
) -> bool:
    """Whether the caller may see the provider's models: one of its teams, one of its
    roles (when it names roles), and the credential's own model globs."""
    if not teams.intersection(provider.teams):
        return False
    if provider.roles and not principal.roles.intersection(provider.roles):
        return False
    globs = principal.model_globs
    return globs is None or any(
        fnmatchcase(model, glob) for model in provider.models for glob in globs
    )
