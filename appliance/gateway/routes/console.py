"""JSON endpoints behind the compliance console and admin page that the audit and
admin APIs do not already offer: integrity (latest checkpoint, verify now), evidence
export of a date range, usage per day, what left for external providers, subject
erasure, engine health.

Every act here that reads the log is recorded first, like the CLI's.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from starlette.background import BackgroundTask

from appliance.audit.access import record_act, shred_subject
from appliance.audit.export import export_bundle
from appliance.audit.forward_status import read_forward_status
from appliance.audit.records import AuditEvent
from appliance.audit.store import SqlAuditStore
from appliance.audit.usage import UsageRow, adapter_of, usage_series
from appliance.audit.verify import verify_log
from appliance.db.tables import audit_log
from appliance.errors import InvalidRequest, VerificationError
from appliance.gateway.audit_access import audit_log_of, request_actor
from appliance.gateway.deps import AuditDep, ServicesDep, require_role
from appliance.gateway.routes.egress_view import router as egress_router
from appliance.gateway.routes.tco import router as tco_router
from appliance.gateway.services import GatewayServices
from appliance.identity.principal import Principal
from appliance.identity.roles import Role

__all__ = ["admin_router", "router"]

router = APIRouter(prefix="/ui/api/audit", tags=["ui"], include_in_schema=False)
admin_router = APIRouter(prefix="/ui/api/admin", tags=["ui"], include_in_schema=False)

AuditorDep = Annotated[Principal, require_role(Role.AUDITOR)]
AdminDep = Annotated[Principal, require_role(Role.ADMIN)]

# The cost chart's endpoint lives in its own module; served under this router's prefix.
router.include_router(tco_router)
router.include_router(egress_router)  # the egress view (issue #17), its own module


def _checkpoint_view(services: GatewayServices) -> dict[str, Any] | None:
    latest = audit_log_of(services).store.latest_checkpoint()
    if latest is None:
        return None
    return {
        "tree_size": latest.tree_size,
        "created_at": latest.created_at.astimezone(UTC).isoformat(),
        "note": latest.note,
    }


@router.get("/integrity")
async def integrity(
    _principal: AuditorDep, services: ServicesDep, request: Request
) -> dict[str, Any]:
    checkpoint = await anyio.to_thread.run_sync(lambda: _checkpoint_view(services))
    last = getattr(request.app.state, "ui_last_verification", None)
    store = SqlAuditStore(services.database)
    forwarder = await anyio.to_thread.run_sync(read_forward_status, services.settings, store)
    return {
        "checkpoint": checkpoint,
        "last_verification": last,
        "forwarder": forwarder.as_dict(services.clock()),  # the SIEM forwarder's lag
    }


@router.post("/verify")
async def verify_now(
    _principal: AuditorDep, services: ServicesDep, store: AuditDep, request: Request
) -> dict[str, Any]:
    log = audit_log_of(services)
    started = time.monotonic()

    def run() -> dict[str, Any]:
        try:
            report = verify_log(store, log.verifier, origin=log.origin)
        except VerificationError as failed:
            return {"ok": False, "message": str(failed)}
        return {
            "ok": True,
            "message": f"{report.records} records and {report.checkpoints} checkpoints verified",
            "records": report.records,
            "latest_checkpoint": report.latest_checkpoint,
        }

    result = await anyio.to_thread.run_sync(run)
    result["ran_at"] = services.clock().astimezone(UTC).isoformat()
    result["seconds"] = round(time.monotonic() - started, 3)
    request.app.state.ui_last_verification = result
    return result


class ExportRange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: date | None = None
    until: date | None = None  # inclusive day
    egress: bool = False  # only calls to external providers, with their summary


@router.post("/export")
async def export(
    body: ExportRange, principal: AuditorDep, services: ServicesDep, request: Request
) -> FileResponse:
    log = audit_log_of(services)
    since = (
        datetime(body.since.year, body.since.month, body.since.day, tzinfo=UTC)
        if body.since
        else None
    )
    until = None
    if body.until is not None:
        until = datetime(body.until.year, body.until.month, body.until.day, tzinfo=UTC)
        until += timedelta(days=1)
    folder = Path(tempfile.mkdtemp(prefix="appliance-export-"))
    kind = "egress" if body.egress else "evidence"
    name = f"{kind}-{body.since or 'start'}-{body.until or 'now'}.zip"
    out = folder / name
    actor = request_actor(principal, request)
    await anyio.to_thread.run_sync(
        lambda: export_bundle(log, out, since=since, until=until, actor=actor, egress=body.egress)
    )

    def cleanup() -> None:
        out.unlink(missing_ok=True)
        folder.rmdir()

    return FileResponse(
        out, media_type="application/zip", filename=name, background=BackgroundTask(cleanup)
    )


@router.get("/usage")
async def usage(
    principal: AuditorDep,
    services: ServicesDep,
    request: Request,
    days: Annotated[int, Query(ge=1, le=366)] = 14,
) -> dict[str, Any]:
    """Requests and tokens per day by team, by model and by adapter, and denials per
    day (:mod:`appliance.audit.usage`)."""
    log = audit_log_of(services)
    actor = request_actor(principal, request)
    since = services.clock().astimezone(UTC) - timedelta(days=days)

    def run() -> dict[str, Any]:
        record_act(
            log,
            actor,
            AuditEvent.AUDIT_SEARCH,
            {"usage_days": days},
            path="GET /ui/api/audit/usage",
            method="GET",
        )
        c = audit_log.c
        query = select(
            c.recorded_at,
            c.event,
            c.team,
            c.model,
            c.prompt_tokens,
            c.completion_tokens,
            c.params,
        ).where(
            c.recorded_at >= since,
            c.event.in_([AuditEvent.COMPLETION.value, AuditEvent.DENIED.value]),
        )
        with services.database.connect() as connection:
            rows = [
                UsageRow(
                    day=row.recorded_at.date().isoformat(),
                    denied=row.event == AuditEvent.DENIED.value,
                    team=row.team,
                    model=row.model,
                    tokens=(row.prompt_tokens or 0) + (row.completion_tokens or 0),
                    adapter=adapter_of(row.model, row.params),
                )
                for row in connection.execute(query)
            ]
        start = since.date()
        day_list = [(start + timedelta(days=i + 1)).isoformat() for i in range(days)]
        return usage_series(rows, day_list)

    return await anyio.to_thread.run_sync(run)


class ShredRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subject: str = Field(min_length=1, max_length=200)
    confirm: str = Field(min_length=1, max_length=200)
    reason: str = Field(min_length=3, max_length=500)


@router.post("/shred")
async def shred(
    body: ShredRequest, principal: AuditorDep, services: ServicesDep, request: Request
) -> dict[str, Any]:
    if body.confirm != body.subject:
        raise InvalidRequest("type the subject again to confirm the erasure", param="confirm")
    log = audit_log_of(services)
    actor = request_actor(principal, request)
    keys = await anyio.to_thread.run_sync(
        lambda: shred_subject(log, body.subject, actor=actor, reason=body.reason)
    )
    return {"subject": body.subject, "keys_destroyed": keys}


@admin_router.get("/engines")
async def engines(_principal: AdminDep, services: ServicesDep) -> dict[str, Any]:
    """One row per engine replica, in the order configured: whether it answers /health
    now, and what the router knows of it (requests in flight, failures in a row,
    circuit open)."""
    return {"data": [asdict(state) for state in await services.upstream.check_replicas()]}
