"""appliance/gateway/audit_access.py: the audit log behind a gateway, the actor of a request."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import pytest
from starlette.requests import Request

from appliance.audit.access import Actor
from appliance.audit.sink import MemoryAuditSink
from appliance.errors import AuditUnavailable
from appliance.gateway.audit_access import audit_log_of, request_actor
from appliance.gateway.services import GatewayServices
from appliance.identity.principal import AuthMethod, Principal


def request_from(client: tuple[str, int] | None) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/", "headers": [], "client": client})


def test_without_a_group_commit_writer_the_log_is_unavailable() -> None:
    services = cast(GatewayServices, SimpleNamespace(audit=MemoryAuditSink()))
    with pytest.raises(AuditUnavailable):
        audit_log_of(services)


def test_actor_carries_the_principal_and_client_address() -> None:
    who = Principal("sub-1", "ada", AuthMethod.OIDC, team="research")
    assert request_actor(who, request_from(("10.0.0.7", 5555))) == Actor(
        subject="sub-1",
        username="ada",
        auth_method="oidc",
        client_addr="10.0.0.7",
        team="research",
    )
    assert request_actor(who, request_from(None)).client_addr is None
