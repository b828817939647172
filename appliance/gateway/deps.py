"""FastAPI dependencies: services, the calling principal, role checks."""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
from fastapi import Depends, Request

from appliance.errors import AuthenticationFailed
from appliance.gateway.context import RequestContext, request_context
from appliance.gateway.services import GatewayServices
from appliance.identity.principal import Principal

__all__ = [
    "ContextDep",
    "PrincipalDep",
    "ServicesDep",
    "current_principal",
    "get_services",
]


def get_services(request: Request) -> GatewayServices:
    services: GatewayServices = request.app.state.services
    return services


ServicesDep = Annotated[GatewayServices, Depends(get_services)]
ContextDep = Annotated[RequestContext, Depends(request_context)]


def _bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationFailed(
            "missing API key: send 'Authorization: Bearer <key>'", code="missing_api_key"
        )
    return token.strip()


async def current_principal(
    request: Request, services: ServicesDep, context: ContextDep
) -> Principal:
    """Who is calling. API keys today; the OIDC issue adds Keycloak JWTs here (a token
    that is not an API key goes to the JWT verifier)."""
    token = _bearer_token(request)
    record = await anyio.to_thread.run_sync(
        lambda: services.api_keys.authenticate(token, now=services.clock())
    )
    if record is None:
        raise AuthenticationFailed("invalid, revoked or expired API key")
    context.principal = record.principal()
    return context.principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]
