"""Capacity planning: model profiles, the GPU catalog, memory math and plans."""

from __future__ import annotations

from appliance.planner.capacity import Fabric, Goal, Plan, PlanRefused, PlanRequest, make_plan
from appliance.planner.colocate import plan_with_embedding
from appliance.planner.commands import HEAD_ADDRESS_PLACEHOLDER, NodeCommand
from appliance.planner.embedding import EmbeddingPlan, EmbeddingRequest
from appliance.planner.hardware import GPU_CATALOG, GpuType, gpu_type
from appliance.planner.memory import Layout, MemoryEstimate, estimate_memory
from appliance.planner.profiles import (
    ModelProfile,
    find_profile,
    load_profile,
    load_profiles,
    profile_schema,
)
from appliance.planner.report import (
    plan_from_dict,
    plan_to_dict,
    render_ansible_vars,
    render_helm_values,
    render_json,
    render_table,
    serve_command,
)

__all__ = [
    "GPU_CATALOG",
    "HEAD_ADDRESS_PLACEHOLDER",
    "EmbeddingPlan",
    "EmbeddingRequest",
    "Fabric",
    "Goal",
    "GpuType",
    "Layout",
    "MemoryEstimate",
    "ModelProfile",
    "NodeCommand",
    "Plan",
    "PlanRefused",
    "PlanRequest",
    "estimate_memory",
    "find_profile",
    "gpu_type",
    "load_profile",
    "load_profiles",
    "make_plan",
    "plan_from_dict",
    "plan_to_dict",
    "plan_with_embedding",
    "profile_schema",
    "render_ansible_vars",
    "render_helm_values",
    "render_json",
    "render_table",
    "serve_command",
]
