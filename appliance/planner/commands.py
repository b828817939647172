"""The exact vLLM flags and environment per node role for a layout. Pure.

Follows vLLM's own recipes (shared/reference/deepseek_vllm.md §3): TP8 + EP or DP8 + EP
on one node; ``--nnodes/--node-rank/--master-addr`` with ``--headless`` workers for
TP x PP across nodes; ``--data-parallel-size-local/--data-parallel-start-rank/
--data-parallel-address`` for data parallelism (wide EP) across nodes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from appliance.engine.launch import OFFLINE_ENV
from appliance.planner.hardware import GpuType
from appliance.planner.memory import KvCacheDtype, Layout
from appliance.planner.profiles import ModelProfile

__all__ = [
    "DEFAULT_DP_RPC_PORT",
    "DEFAULT_MASTER_PORT",
    "HEAD_ADDRESS_PLACEHOLDER",
    "NodeCommand",
    "Role",
    "build_commands",
    "core_args",
]

Role = Literal["head", "worker"]
HEAD_ADDRESS_PLACEHOLDER = "<head-node-ip>"
DEFAULT_MASTER_PORT = 29501  # vLLM ParallelConfig.master_port
DEFAULT_DP_RPC_PORT = 13345  # the port vLLM's EP deployment guide uses


@dataclass(frozen=True)
class NodeCommand:
    """What one node runs. ``extra_args`` are the flags beyond the core ones that
    :class:`~appliance.engine.launch.LaunchSpec` sets itself (parallel sizes, context
    length, dtype, memory utilization); ``env`` is the full engine environment apart
    from the shared secret."""

    role: Role
    node_rank: int
    extra_args: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)


def core_args(
    layout: Layout, *, max_model_len: int, dtype: str, gpu_memory_utilization: float | None
) -> tuple[str, ...]:
    """The flags LaunchSpec emits, in its order (for display and Helm/Ansible)."""
    args = [
        "--max-model-len", str(max_model_len),
        "--dtype", dtype,
        "--tensor-parallel-size", str(layout.tp),
        "--pipeline-parallel-size", str(layout.pp),
    ]  # fmt: skip
    if layout.dp > 1:
        args += ["--data-parallel-size", str(layout.dp)]
    if gpu_memory_utilization is not None:
        args += ["--gpu-memory-utilization", str(gpu_memory_utilization)]
    return tuple(args)


def _model_args(profile: ModelProfile, layout: Layout, kv_cache_dtype: KvCacheDtype) -> list[str]:
    args: list[str] = []
    if profile.trust_remote_code:
        args.append("--trust-remote-code")
    if layout.ep:
        args.append("--enable-expert-parallel")
    if layout.dcp > 1:
        args += ["--decode-context-parallel-size", str(layout.dcp)]
    if kv_cache_dtype == "fp8":
        args += ["--kv-cache-dtype", "fp8"]
    if profile.reasoning_parser:
        args += ["--reasoning-parser", profile.reasoning_parser]
    if profile.tool_call_parser:
        args += ["--enable-auto-tool-choice", "--tool-call-parser", profile.tool_call_parser]
    if profile.chat_template:
        args += ["--chat-template", profile.chat_template]
    return args


def _environment(profile: ModelProfile, gpu: GpuType) -> dict[str, str]:
    env = dict(OFFLINE_ENV)
    if gpu.vendor == "nvidia" and gpu.hopper and profile.is_moe and profile.weight_dtype == "fp8":
        env["VLLM_USE_FLASHINFER_MOE_FP8"] = "1"  # recipes: Hopper override
    if gpu.vendor == "amd":
        env.update({"VLLM_ROCM_USE_AITER": "1", "SAFETENSORS_FAST_GPU": "1"})
        if profile.is_moe:
            env["VLLM_ROCM_USE_AITER_MOE"] = "1"
    return env


def build_commands(
    profile: ModelProfile,
    gpu: GpuType,
    layout: Layout,
    *,
    nodes: int,
    gpus_per_node: int,
    kv_cache_dtype: KvCacheDtype,
    master_addr: str = HEAD_ADDRESS_PLACEHOLDER,
    cpu_kv_cache_gib: int | None = None,
) -> tuple[NodeCommand, ...]:
    """One :class:`NodeCommand` per node: rank 0 is the head (serves HTTP), the others
    are headless workers."""
    base = _model_args(profile, layout, kv_cache_dtype)
    env = _environment(profile, gpu)
    if gpu.device == "cpu" and cpu_kv_cache_gib is not None:
        env["VLLM_CPU_KVCACHE_SPACE"] = str(cpu_kv_cache_gib)
    if nodes == 1:
        return (NodeCommand("head", 0, tuple(base), env),)
    commands: list[NodeCommand] = []
    if layout.dp > 1:
        # Data parallelism across nodes: each node runs its local DP ranks.
        local = gpus_per_node // (layout.tp * layout.pp)
        for rank in range(nodes):
            args = [*base, "--data-parallel-size-local", str(local)]
            if layout.ep and layout.tp == 1:
                args += ["--all2all-backend", "deepep_low_latency"]
            if rank:
                args += ["--data-parallel-start-rank", str(rank * local)]
            args += [
                "--data-parallel-address", master_addr,
                "--data-parallel-rpc-port", str(DEFAULT_DP_RPC_PORT),
            ]  # fmt: skip
            args += ["--headless"] if rank else ["--api-server-count", str(local)]
            commands.append(NodeCommand("worker" if rank else "head", rank, tuple(args), env))
        return tuple(commands)
    for rank in range(nodes):
        args = [
            *base,
            "--nnodes", str(nodes),
            "--node-rank", str(rank),
            "--master-addr", master_addr,
            "--master-port", str(DEFAULT_MASTER_PORT),
        ]  # fmt: skip
        if rank:
            args.append("--headless")
        commands.append(NodeCommand("worker" if rank else "head", rank, tuple(args), env))
    return tuple(commands)
