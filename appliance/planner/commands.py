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
from appliance.planner.profiles import ENGINE_CHAT_TEMPLATE_DIR, ModelProfile

__all__ = [
    "DEEPEP_ALL2ALL_BACKEND",
    "DEFAULT_DP_RPC_PORT",
    "DEFAULT_MASTER_PORT",
    "HEAD_ADDRESS_PLACEHOLDER",
    "NEEDS_RDMA_FABRIC",
    "Fabric",
    "NodeCommand",
    "Role",
    "build_commands",
    "core_args",
    "uses_deepep",
]

Role = Literal["head", "worker"]
HEAD_ADDRESS_PLACEHOLDER = "<head-node-ip>"
DEFAULT_MASTER_PORT = 29501  # vLLM ParallelConfig.master_port
DEFAULT_DP_RPC_PORT = 13345  # the port vLLM's EP deployment guide uses
# The site's inter-node fabric: "rdma" is InfiniBand/RoCE with GPUDirect RDMA reachable
# from the engines; "none" is plain TCP (NCCL's socket transport) between nodes.
Fabric = Literal["none", "rdma"]
DEEPEP_ALL2ALL_BACKEND = "deepep_low_latency"  # vLLM's multi-node decode all-to-all


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


def _model_args(
    profile: ModelProfile,
    layout: Layout,
    kv_cache_dtype: KvCacheDtype,
    *,
    gpu: GpuType | None = None,
    nodes: int = 1,
) -> list[str]:
    args: list[str] = []
    if profile.trust_remote_code:
        args.append("--trust-remote-code")
    if layout.ep:
        args.append("--enable-expert-parallel")
    if layout.dcp > 1:
        args += ["--decode-context-parallel-size", str(layout.dcp)]
    if kv_cache_dtype == "fp8":
        args += ["--kv-cache-dtype", "fp8"]
    if gpu is not None and (backend := _moe_backend(profile, gpu, layout, nodes)):
        args += ["--moe-backend", backend]
    if gpu is not None and _needs_reference_cpu_mla(profile, gpu):
        args += ["--attention-backend", "CPU_MLA"]
    if profile.reasoning_parser:
        args += ["--reasoning-parser", profile.reasoning_parser]
    if profile.tool_call_parser:
        args += ["--enable-auto-tool-choice", "--tool-call-parser", profile.tool_call_parser]
    if profile.chat_template:
        # Every deploy path places the profile's template there (profiles.py).
        args += ["--chat-template", f"{ENGINE_CHAT_TEMPLATE_DIR}/{profile.chat_template}"]
    return args


def _needs_reference_cpu_mla(profile: ModelProfile, gpu: GpuType) -> bool:
    """vLLM 0.32 on a CPU with AMX picks its AMX MLA backend for every MLA model
    (platforms/cpu.py), and that backend refuses float32 weights at load ("expect
    weight to be bfloat16, float16, int8 ..."; v1/attention/backends/mla/amx_mla.py).
    A CPU plan runs float32 unless the profile names another dtype, so such plans ask
    for the reference CPU MLA backend, which vLLM honours on any CPU. On a CPU without
    AMX vLLM picks that backend anyway."""
    return (
        gpu.device == "cpu"
        and profile.attention.kind == "mla"
        and (profile.vllm_dtype or "float32") in ("float32", "float")
    )


def _moe_backend(profile: ModelProfile, gpu: GpuType, layout: Layout, nodes: int) -> str | None:
    """The FlashInfer MoE kernels the recipes switch on, as vLLM 0.32 spells the switch.

    The recipes (reference §3.1) export VLLM_USE_FLASHINFER_MOE_FP8=1 (Hopper, and
    Blackwell with FP8 weights) and VLLM_USE_FLASHINFER_MOE_FP4=1 (Blackwell, NVFP4).
    Neither variable is in vLLM 0.32's vllm/envs.py: vLLM would log "Unknown vLLM
    environment variable detected" and ignore them. 0.32 picks MoE kernels with
    ``--moe-backend`` (KernelConfig.moe_backend, vllm/config/kernel.py; default auto):

    - Hopper, block-FP8 weights: ``flashinfer_cutlass``. FlashInfer's CUTLASS MoE takes
      128x128 block FP8 on SM90 only (experts/flashinfer_cutlass_moe.py); 0.32's own
      order puts it first on SM90 with EP and Triton first without (oracle/fp8.py).
    - Blackwell, block-FP8 weights: ``flashinfer_trtllm``, FlashInfer's TRTLLM-gen MoE
      (Blackwell family only, experts/trtllm_fp8_moe.py); FlashInfer's CUTLASS MoE takes
      block FP8 only on SM90.
    - Blackwell, NVFP4 weights: ``flashinfer_trtllm``, first in 0.32's NVFP4 order
      (oracle/nvfp4.py); ``flashinfer_cutlass`` also takes NVFP4. Which of the two the
      recipe's variable meant is unverified (docs/production.md).

    An explicit backend that cannot run a configuration fails the engine at start, where
    auto would fall back to a slower kernel silently. All three kernels take the standard
    activation format only, and DeepEP low-latency (wide EP across nodes) hands experts
    the batched one, so wide-EP plans leave the choice to vLLM (none here).
    """
    if not profile.is_moe or uses_deepep(layout, nodes):
        return None
    if profile.weight_dtype == "fp8" and gpu.hopper:
        return "flashinfer_cutlass"
    if profile.weight_dtype in ("fp8", "nvfp4") and gpu.blackwell:
        return "flashinfer_trtllm"
    return None


def _environment(profile: ModelProfile, gpu: GpuType) -> dict[str, str]:
    """The engine environment of every plan: the offline switches (launch.OFFLINE_ENV),
    whatever the model and GPU. Checked against vLLM 0.32 (vllm/envs.py):
    VLLM_NO_USAGE_STATS is vLLM's own switch; DO_NOT_TRACK is read as the fallback of
    VLLM_DO_NOT_TRACK; HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE and HF_DATASETS_OFFLINE belong
    to huggingface_hub, transformers and datasets. Kernel choices are flags, not
    variables, in 0.32 (:func:`_moe_backend`). AMD's AITER switches left with MI300X
    (hardware.WITHDRAWN_GPUS)."""
    return dict(OFFLINE_ENV)


def uses_deepep(layout: Layout, nodes: int) -> bool:
    """Wide EP: one attention rank per GPU (TP1) and data plus expert parallelism across
    nodes, whose all-to-all is DeepEP's (``--all2all-backend deepep_low_latency``, vLLM's
    multi-node recipe, reference §3.3)."""
    return nodes > 1 and layout.dp > 1 and layout.ep and layout.tp == 1


# Why wide EP cannot run without an RDMA fabric, naming the fix.
NEEDS_RDMA_FABRIC = (
    f"wide EP across nodes exchanges tokens with DeepEP (--all2all-backend "
    f"{DEEPEP_ALL2ALL_BACKEND}), whose inter-node kernels run on NVSHMEM over "
    "InfiniBand/RoCE (GPU-initiated RDMA), and this site declared no such fabric: declare "
    "it with --fabric rdma (the chart then needs engine.rdma, docs/helm.md), or plan a "
    "layout without wide EP"
)


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
    fabric: Fabric = "none",
    extra_args: tuple[str, ...] = (),
) -> tuple[NodeCommand, ...]:
    """One :class:`NodeCommand` per node: rank 0 is the head (serves HTTP), the others
    are headless workers. DeepEP is emitted only for a site with an RDMA ``fabric``;
    wide EP without one is a ValueError (the planner refuses it first, with
    :data:`NEEDS_RDMA_FABRIC`). ``extra_args`` go to every node (LoRA slots: lora.py)."""
    if uses_deepep(layout, nodes) and fabric != "rdma":
        raise ValueError(NEEDS_RDMA_FABRIC)
    base = [*_model_args(profile, layout, kv_cache_dtype, gpu=gpu, nodes=nodes), *extra_args]
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
            if uses_deepep(layout, nodes):
                args += ["--all2all-backend", DEEPEP_ALL2ALL_BACKEND]
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
