"""One router per resource."""

from __future__ import annotations

from appliance.gateway.routes.admin import router as admin_router
from appliance.gateway.routes.audit import router as audit_router
from appliance.gateway.routes.auth import router as auth_router
from appliance.gateway.routes.console import admin_router as ui_admin_router
from appliance.gateway.routes.console import router as console_router
from appliance.gateway.routes.conversations import router as conversations_router
from appliance.gateway.routes.health import router as health_router
from appliance.gateway.routes.openai import aliases_router as openai_aliases_router
from appliance.gateway.routes.openai import router as openai_router
from appliance.gateway.routes.retention import router as retention_router
from appliance.gateway.routes.ui import router as ui_router

__all__ = [
    "admin_router",
    "audit_router",
    "auth_router",
    "console_router",
    "conversations_router",
    "health_router",
    "openai_aliases_router",
    "openai_router",
    "retention_router",
    "ui_admin_router",
    "ui_router",
]
