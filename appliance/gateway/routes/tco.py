"""The compliance console's cost chart: this month's in-house X, external Y and what
the external share would have cost in-house Z, with their assumptions
(:mod:`appliance.tco.chart`, the arithmetic of ``appliance tco``).

Auditors only, like the console's other panels: the figures are read from the audit
log's metadata, and the read is recorded (audit.search) before it is made. With
``tco:`` or ``external_providers`` incomplete the answer names what to configure
instead of failing; included in the console router (``routes/console.py``).
"""

from __future__ import annotations

from datetime import UTC
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Request

from appliance.audit.access import record_act
from appliance.audit.records import AuditEvent
from appliance.gateway.audit_access import audit_log_of, request_actor
from appliance.gateway.deps import ServicesDep, require_role
from appliance.identity.principal import Principal
from appliance.identity.roles import Role
from appliance.tco import (
    chart_figures,
    chart_to_dict,
    configured_hardware,
    missing_inputs,
    month_completions,
    throughput_of,
    unconfigured_to_dict,
)

__all__ = ["NO_PROVIDERS", "router"]

router = APIRouter(tags=["ui"], include_in_schema=False)

AuditorDep = Annotated[Principal, require_role(Role.AUDITOR)]

NO_PROVIDERS = "external_providers (docs/egress.md): with none, nothing leaves to compare"


@router.get("/tco")
async def tco_month(
    principal: AuditorDep, services: ServicesDep, request: Request
) -> dict[str, Any]:
    """What ``appliance tco`` would say of this month (UTC), split in-house/external."""
    settings = services.settings
    month = services.clock().astimezone(UTC).strftime("%Y-%m")
    # The gateway has no plan file: nodes and GPUs come from tco.nodes/gpus_per_node.
    missing = missing_inputs(settings.tco, hardware_known=False)
    if not settings.external_providers:
        missing.append(NO_PROVIDERS)
    if missing:
        return unconfigured_to_dict(month, missing)
    log = audit_log_of(services)
    actor = request_actor(principal, request)

    def run() -> dict[str, Any]:
        record_act(
            log, actor, AuditEvent.AUDIT_SEARCH, {"tco_month": month},
            path="GET /ui/api/audit/tco", method="GET",
        )  # fmt: skip
        figures = chart_figures(
            settings.tco,
            configured_hardware(settings.tco),
            settings.external_providers,
            month_completions(log.store.engine, month),
            month=month,
            throughput=throughput_of(settings.tco),
        )
        return chart_to_dict(figures)

    return await anyio.to_thread.run_sync(run)
