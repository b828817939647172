"""One router per resource."""

from __future__ import annotations

from appliance.gateway.routes.health import router as health_router
from appliance.gateway.routes.openai import router as openai_router

__all__ = ["health_router", "openai_router"]
