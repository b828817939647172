"""Building audit records from a request's context and writing them fail-closed."""

from __future__ import annotations

import logging
import uuid

from starlette.requests import Request

from appliance.audit.records import AuditEvent, AuditRecord, Outcome
from appliance.errors import ApplianceError, AuditUnavailable
from appliance.gateway.context import RequestContext
from appliance.gateway.services import GatewayServices

__all__ = ["audit_record", "write_audit"]

logger = logging.getLogger("appliance.gateway.audit")


def audit_record(
    services: GatewayServices,
    request: Request,
    context: RequestContext,
    *,
    event: AuditEvent,
    status_code: int,
    outcome: Outcome,
    denial_reason: str | None = None,
    prompt_tokens: int | None = None,
    completion_tokens: int | None = None,
) -> AuditRecord:
    principal = context.principal
    return AuditRecord(
        record_id=str(uuid.uuid4()),
        recorded_at=services.clock(),
        event=event,
        request_id=context.request_id,
        http_method=request.method,
        path=request.url.path[:200],
        status_code=status_code,
        outcome=outcome,
        subject=principal.subject if principal else None,
        username=principal.username if principal else None,
        auth_method=principal.auth_method.value if principal else None,
        key_id=principal.key_id if principal else None,
        client_addr=request.client.host if request.client else None,
        model=context.model,
        params=context.params,
        denial_reason=denial_reason,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        latency_ms=None if event is AuditEvent.REQUEST else context.elapsed_ms(),
    )


async def write_audit(services: GatewayServices, record: AuditRecord) -> None:
    """Append or raise AuditUnavailable: callers refuse the request when this fails."""
    try:
        await services.audit.append(record)
    except ApplianceError:
        raise
    except Exception as exc:
        logger.exception("audit append failed for request %s", record.request_id)
        raise AuditUnavailable("the audit log is unavailable; the request was not served") from exc
