"""The compliance console's retention panel: per event kind, the period, how much
content is past it now, and what falls due on which day; the floor and any override.
Auditors only; the look is recorded (audit.search), like the console's other reads.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Query, Request

from appliance.audit.access import record_act
from appliance.audit.records import AuditEvent
from appliance.audit.retention import RetentionPolicy, schedule_document
from appliance.audit.retention_store import retention_plan
from appliance.gateway.audit_access import audit_log_of, request_actor
from appliance.gateway.deps import ServicesDep, require_role
from appliance.identity.principal import Principal
from appliance.identity.roles import Role

__all__ = ["router"]

router = APIRouter(prefix="/ui/api/audit", tags=["ui"], include_in_schema=False)

AuditorDep = Annotated[Principal, require_role(Role.AUDITOR)]


@router.get("/retention")
async def retention(
    principal: AuditorDep,
    services: ServicesDep,
    request: Request,
    horizon_days: Annotated[int, Query(ge=1, le=3660)] = 90,
) -> dict[str, Any]:
    """What `appliance audit retention plan --json` prints, for the console."""
    log = audit_log_of(services)
    actor = request_actor(principal, request)
    policy = RetentionPolicy.from_settings(services.settings.audit.retention)

    def run() -> dict[str, Any]:
        record_act(
            log, actor, AuditEvent.AUDIT_SEARCH, {"retention_plan": True},
            path="GET /ui/api/audit/retention", method="GET",
        )  # fmt: skip
        now = log.now()
        kinds = retention_plan(log.store.engine, policy, now, horizon_days=horizon_days)
        return schedule_document(policy, kinds, now=now, horizon_days=horizon_days)

    return await anyio.to_thread.run_sync(run)
