"""Liveness and readiness; the only routes that answer without a credential."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from appliance.db.engine import check_database
from appliance.gateway.deps import ServicesDep
from appliance.gateway.pool import ReplicaState

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The gateway process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def _numbered(replicas: list[ReplicaState]) -> list[dict[str, Any]]:
    """Each replica as (model, its position among the model's replicas, health)."""
    seen: dict[str, int] = {}
    report = []
    for replica in replicas:
        position = seen.get(replica.model, 0)
        seen[replica.model] = position + 1
        report.append({"model": replica.model, "replica": position, "healthy": replica.healthy})
    return report


@router.get("/readyz", summary="Database reachable and every model served by a healthy replica")
async def readyz(services: ServicesDep) -> JSONResponse:
    """Ready when the database answers and every model has at least one replica that
    answers its health check: the gateway can still serve every model. One dead replica
    of several must not take this gateway out of its load balancer (every gateway sees
    the same engines, so all of them would leave together); the report names it."""
    try:
        await anyio.to_thread.run_sync(check_database, services.database)
        database = "ok"
    except Exception:
        database = "unavailable"
    replicas = await services.upstream.check_replicas()
    engines = {model: "unavailable" for model in services.upstream.models()}
    for replica in replicas:
        if replica.healthy:
            engines[replica.model] = "ok"
    ready = database == "ok" and bool(engines) and all(v == "ok" for v in engines.values())
    report: dict[str, Any] = {
        "status": "ready" if ready else "not_ready",
        "database": database,
        "engines": engines,  # per model, as before: "ok" when any replica is healthy
        # Numbered, not named: this route needs no credential, and engine addresses are
        # for admins (the admin API and /metrics carry them).
        "replicas": _numbered(replicas),
    }
    return JSONResponse(report, status_code=200 if ready else 503)
