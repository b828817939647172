"""Audit records for what is not an inference request: browser sign-in and sign-out,
and admin acts on API keys. Each is written before its effect (the session cookie, the
new or revoked key), fail-closed: when the record cannot be written, the act does not
happen and the caller gets 503 (:class:`~appliance.errors.AuditUnavailable`)."""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request

from appliance.audit.records import AuditEvent, Outcome
from appliance.errors import AuditUnavailable
from appliance.gateway.auditing import audit_record, write_audit
from appliance.gateway.context import request_context
from appliance.gateway.services import GatewayServices
from appliance.identity.principal import AuthMethod, Principal

__all__ = ["record_sign_in", "sign_out_recorded", "write_act"]

logger = logging.getLogger("appliance.gateway.audit")


async def write_act(
    services: GatewayServices,
    request: Request,
    *,
    event: AuditEvent,
    principal: Principal | None,
    status_code: int,
    params: dict[str, Any],
    denial_reason: str | None = None,
) -> None:
    """Write one act's record; refused acts carry ``denial_reason``."""
    context = request_context(request)
    if principal is not None:
        context.principal = principal
    record = audit_record(
        services,
        request,
        context,
        event=event,
        status_code=status_code,
        outcome=Outcome.OK if denial_reason is None else Outcome.DENIED,
        denial_reason=None if denial_reason is None else denial_reason[:1000],
        extra_params=params,
    )
    # A record per act, not per request: later refusals of this request are new facts.
    await write_audit(services, record)


async def record_sign_in(
    services: GatewayServices,
    request: Request,
    *,
    method: AuthMethod,
    principal: Principal | None,
    failure: str | None = None,
    status_code: int = 303,
) -> None:
    """A browser sign-in: ``principal`` when it succeeded, ``failure`` (safe to show,
    never the presented secret) when it did not; ``status_code`` is what the browser
    gets."""
    await write_act(
        services,
        request,
        event=AuditEvent.SIGN_IN,
        principal=principal,
        status_code=status_code,
        params={"method": method.value},
        denial_reason=failure,
    )


async def sign_out_recorded(
    services: GatewayServices, request: Request, principal: Principal
) -> None:
    """Record a sign-out. Ending a session only ever takes access away, so it goes ahead
    even when the record cannot be written (logged as an error)."""
    try:
        await write_act(
            services,
            request,
            event=AuditEvent.SIGN_OUT,
            principal=principal,
            status_code=303,
            params={"method": principal.auth_method.value},
        )
    except AuditUnavailable:
        logger.error("sign-out of %s not recorded: the audit log is unavailable", principal.subject)
