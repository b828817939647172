"""Liveness and readiness; the only routes that answer without a credential."""

from __future__ import annotations

import anyio.to_thread
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from appliance.db.engine import check_database
from appliance.gateway.deps import ServicesDep

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The gateway process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Database reachable and every engine healthy")
async def readyz(services: ServicesDep) -> JSONResponse:
    try:
        await anyio.to_thread.run_sync(check_database, services.database)
        database = "ok"
    except Exception:
        database = "unavailable"
    engines = {
        model: "ok" if await services.upstream.healthy(model) else "unavailable"
        for model in services.upstream.models()
    }
    ready = database == "ok" and bool(engines) and all(v == "ok" for v in engines.values())
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "database": database, "engines": engines},
        status_code=200 if ready else 503,
    )
