"""Starting and watching vLLM engine processes (never importing vLLM)."""

from __future__ import annotations

from appliance.engine.launch import OFFLINE_ENV, LaunchSpec, cpu_thread_binding, spec_from_settings
from appliance.engine.supervisor import EngineSupervisor, wait_healthy

__all__ = [
    "OFFLINE_ENV",
    "EngineSupervisor",
    "LaunchSpec",
    "cpu_thread_binding",
    "spec_from_settings",
    "wait_healthy",
]
