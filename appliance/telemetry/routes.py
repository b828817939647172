"""``GET /metrics``: Prometheus text format."""

from __future__ import annotations

import anyio.to_thread
from fastapi import APIRouter, Request, Response

from appliance.errors import ModelNotFound
from appliance.telemetry.metrics import CONTENT_TYPE

__all__ = ["router"]

router = APIRouter(tags=["telemetry"])


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    services = request.app.state.services
    telemetry = getattr(services, "telemetry", None)
    if telemetry is None or not services.settings.telemetry.metrics_enabled:
        raise ModelNotFound("no such route", code="not_found")
    # Rendering queries the database (the SIEM forwarder's lag): off the event loop, so a
    # slow database never stalls the requests in flight.
    body = await anyio.to_thread.run_sync(telemetry.metrics.render)
    return Response(body, media_type=CONTENT_TYPE)
