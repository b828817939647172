"""The OpenAI-compatible API."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from appliance.gateway.deps import ContextDep, PrincipalDep, ServicesDep
from appliance.gateway.proxy import proxy_openai
from appliance.gateway.schemas import ChatCompletionRequest, CompletionRequest
from appliance.identity.policy import allowed_models

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


@router.get("/models", summary="The models the caller may use")
async def list_models(principal: PrincipalDep, services: ServicesDep) -> dict[str, object]:
    names = allowed_models(
        principal, services.upstream.models(), services.settings.policy.role_models
    )
    return {
        "object": "list",
        "data": [{"id": name, "object": "model", "owned_by": "appliance"} for name in names],
    }
