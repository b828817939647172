"""Starting and watching vLLM engine processes (never importing vLLM)."""

from __future__ import annotations

from appliance.engine.launch import (
    OFFLINE_ENV,
    EngineTls,
    LaunchSpec,
    Pooling,
    cpu_thread_binding,
    embedding_spec_from_settings,
    engine_tls_from_settings,
    spec_from_settings,
)
from appliance.engine.supervisor import EngineSupervisor, wait_healthy
from appliance.engine.tls import health_check_context, health_tls_from_settings

__all__ = [
    "OFFLINE_ENV",
    "EngineSupervisor",
    "EngineTls",
    "LaunchSpec",
    "Pooling",
    "cpu_thread_binding",
    "embedding_spec_from_settings",
    "engine_tls_from_settings",
    "health_check_context",
    "health_tls_from_settings",
    "spec_from_settings",
    "wait_healthy",
]
