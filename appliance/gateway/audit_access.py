"""What the audit API and the compliance console share: the gateway's audit log, and
the :class:`Actor` that every act of reading it is recorded under."""

from __future__ import annotations

from starlette.requests import Request

from appliance.audit.access import Actor
from appliance.audit.log import AuditLog
from appliance.audit.sink import LogSink
from appliance.errors import AuditUnavailable
from appliance.gateway.services import GatewayServices
from appliance.identity.principal import Principal

__all__ = ["audit_log_of", "request_actor"]


def audit_log_of(services: GatewayServices) -> AuditLog:
    """The log behind the gateway's audit writer; AuditUnavailable when there is none."""
    if isinstance(services.audit, LogSink):
        return services.audit.log
    raise AuditUnavailable("the audit log is not available in this gateway")


def request_actor(principal: Principal, request: Request) -> Actor:
    """The principal behind a request, with the client address it came from."""
    return Actor(
        subject=principal.subject,
        username=principal.username,
        auth_method=principal.auth_method.value,
        client_addr=request.client.host if request.client else None,
        team=principal.team,
    )
