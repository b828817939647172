"""From "this model on this hardware" to a plan: layout, memory, KV capacity,
concurrency, the vLLM commands per node, and why. Pure: values in, values out.

The first candidate layout (``layouts.py``, vLLM's recipes) that fits wins; an admin
may instead ask for one layout, which is then checked rather than chosen.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from appliance.errors import ApplianceError
from appliance.planner.commands import (
    HEAD_ADDRESS_PLACEHOLDER,
    NEEDS_RDMA_FABRIC,
    Fabric,
    NodeCommand,
    Role,
    build_commands,
    uses_deepep,
)
from appliance.planner.embedding import EmbeddingPlan
from appliance.planner.hardware import GPU_CATALOG, GpuType, unsupported_weights
from appliance.planner.layouts import Candidate, Goal, candidates, check_layout, divisors
from appliance.planner.lora import lora_args, lora_bytes_per_gpu, lora_explanation, lora_problem
from appliance.planner.memory import GIB, KvCacheDtype, Layout, MemoryEstimate, estimate_memory
from appliance.planner.profiles import ModelProfile

__all__ = ["Fabric", "Goal", "Plan", "PlanRefused", "PlanRequest", "make_plan"]


@dataclass(frozen=True)
class PlanRequest:
    """What the admin asks: a model on some hardware, with a goal and limits."""

    model: str
    gpu: str
    gpus_per_node: int
    nodes: int = 1
    goal: Goal = "latency"
    max_model_len: int | None = None
    kv_cache_dtype: KvCacheDtype = "auto"
    gpu_memory_utilization: float = 0.9
    master_addr: str = HEAD_ADDRESS_PLACEHOLDER
    memory_mib: int | None = None
    layout: Layout | None = None  # the admin's choice instead of the recipes'
    fabric: Fabric = "none"  # "rdma": the site has InfiniBand/RoCE between its GPU nodes
    max_loras: int = 0  # LoRA adapter slots (--max-loras); 0: no LoRA
    max_lora_rank: int = 0  # rounded up to a rank vLLM accepts (lora_rank_limit)

    def __post_init__(self) -> None:
        if self.gpus_per_node < 1 or self.nodes < 1:
            raise ValueError("gpus_per_node and nodes must be >= 1")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError("gpu_memory_utilization must be in (0, 1]")
        if self.max_model_len is not None and self.max_model_len < 16:
            raise ValueError("max_model_len must be >= 16")
        if self.memory_mib is not None and self.memory_mib < 1:
            raise ValueError("memory_mib must be >= 1")
        lora_args(self.max_loras, self.max_lora_rank)  # ValueError if vLLM refuses them


@dataclass(frozen=True)
class Plan:
    """A fitting deployment: everything needed to run and explain it."""

    request: PlanRequest
    model: str
    display_name: str
    served_model_name: str
    gpu: str
    gpu_name: str
    device: Literal["cpu", "gpu"]
    layout: Layout
    memory: MemoryEstimate
    max_model_len: int
    kv_cache_dtype: KvCacheDtype
    dtype: str
    gpu_memory_utilization: float
    commands: tuple[NodeCommand, ...]
    explanation: tuple[str, ...]
    warnings: tuple[str, ...] = ()
    cpu_kv_cache_gib: int | None = None
    embedding: EmbeddingPlan | None = None  # an embedding engine beside it (colocate.py)

    @property
    def nodes(self) -> int:
        return self.request.nodes

    @property
    def gpus_per_node(self) -> int:
        return self.request.gpus_per_node

    @property
    def uses_deepep(self) -> bool:
        """Wide EP across nodes: DeepEP all-to-all, so the engines need the RDMA fabric
        (and, on Kubernetes, root with IPC_LOCK and SYS_RAWIO: docs/helm.md)."""
        return uses_deepep(self.layout, self.nodes)

    @property
    def needs_rdma(self) -> bool:
        """The engine pods must attach the site's RDMA fabric: DeepEP needs it, and NCCL
        uses it between nodes when the site declared one."""
        return self.nodes > 1 and self.request.fabric == "rdma"

    def command(self, role: Role, node_rank: int | None = None) -> NodeCommand:
        """The head's command, or a worker's (the first worker unless ``node_rank``)."""
        for command in self.commands:
            if command.role == role and (node_rank is None or command.node_rank == node_rank):
                return command
        wanted = role if node_rank is None else f"{role} with node rank {node_rank}"
        raise ValueError(f"this plan has no {wanted} (nodes: {self.nodes})")


class PlanRefused(ApplianceError):
    """The model does not fit the hardware; says why and what would fit."""

    status_code = 422
    error_type = "invalid_request_error"
    code = "does_not_fit"

    def __init__(self, reason: str, suggestions: Sequence[str] = ()):
        message = reason
        if suggestions:
            message += " Would fit: " + "; ".join(suggestions) + "."
        super().__init__(message)
        self.reason = reason
        self.suggestions = tuple(suggestions)


def _gib(value: float) -> str:
    return f"{value / GIB:.1f} GiB"


def _tokens(value: int) -> str:
    return f"{value / 1e6:.2f}M" if value >= 1_000_000 else f"{value / 1e3:.0f}k"


def _where(request: PlanRequest, gpu: GpuType) -> str:
    node = "node" if request.nodes == 1 else "nodes"
    return f"{request.nodes} {node} x {request.gpus_per_node} x {gpu.name}"


def _evaluate(
    profile: ModelProfile,
    gpu: GpuType,
    request: PlanRequest,
    layout: Layout,
    *,
    max_model_len: int,
    dtype: str,
    weight_scale: float,
) -> tuple[Layout, MemoryEstimate, str | None]:
    """Memory for ``layout`` (adding decode context parallelism when the context does
    not fit otherwise); the third value is why it does not fit, or None."""
    memory_bytes = (request.memory_mib or gpu.memory_mib) << 20

    def estimate(candidate: Layout) -> MemoryEstimate:
        return estimate_memory(
            profile, candidate, device_memory_bytes=memory_bytes,
            gpu_memory_utilization=request.gpu_memory_utilization,
            kv_cache_dtype=request.kv_cache_dtype, max_model_len=max_model_len,
            dtype=dtype, weight_scale=weight_scale, lora_bytes=lora_bytes_per_gpu(
                profile, candidate, request.max_loras, request.max_lora_rank, dtype),
        )  # fmt: skip

    memory = estimate(layout)
    if why := lora_problem(profile, layout, request.max_loras):
        return layout, memory, why
    if not memory.fits_weights:
        lora = f" and {_gib(memory.lora_bytes)} of LoRA slots" if memory.lora_bytes else ""
        return layout, memory, (
            f"with {layout.describe()} each {'rank' if gpu.device == 'cpu' else 'GPU'} "
            f"holds {_gib(memory.weight_bytes)} of weights plus ~"
            f"{_gib(memory.overhead_bytes)} runtime overhead{lora}, but only "
            f"{_gib(memory.usable_bytes)} is usable at --gpu-memory-utilization "
            f"{request.gpu_memory_utilization}"
        )  # fmt: skip
    if memory.kv_tokens_per_replica >= max_model_len:
        return layout, memory, None
    if profile.attention.kind == "mla" and gpu.device == "gpu":
        for dcp in divisors(layout.tp)[1:]:
            sharded = replace(layout, dcp=dcp)
            with_dcp = estimate(sharded)
            if with_dcp.kv_tokens_per_replica >= max_model_len:
                return sharded, with_dcp, None
    return layout, memory, (
        f"with {layout.describe()} the KV cache holds {_tokens(memory.kv_tokens_per_replica)} "
        f"tokens per replica ({_gib(max(memory.kv_bytes, 0))} per GPU), less than one "
        f"request of --max-model-len {max_model_len}"
    )  # fmt: skip


def _explain(
    profile: ModelProfile, gpu: GpuType, request: PlanRequest, plan_layout: Layout,
    memory: MemoryEstimate, why: str, dtype: str, weight_scale: float,
) -> tuple[str, ...]:  # fmt: skip
    lines = [why]
    if plan_layout.dcp > 1:
        lines.append(
            f"DCP{plan_layout.dcp}: decode context parallelism shards the MLA latent cache "
            f"along the sequence, so {_tokens(memory.kv_tokens_per_replica)} tokens fit where "
            "TP alone would replicate it on every rank"
        )
    if weight_scale != 1.0:
        lines.append(
            f"{gpu.name} has no FP8 support: the FP8 checkpoint is sized as BF16 "
            "(convert it with DeepSeek's fp8_cast_bf16.py)"
        )
    lines.append(
        f"weights: {_gib(memory.weight_bytes)} per GPU; runtime overhead ~"
        f"{_gib(memory.overhead_bytes)} (activations, CUDA graphs, communication buffers)"
    )
    if memory.lora_bytes:
        lines.append(lora_explanation(request.max_loras, request.max_lora_rank, memory.lora_bytes))
    if profile.attention.kind == "mla":
        kv_rule = (
            "MLA caches one latent per token per layer; it is replicated on every TP rank, "
            "split across PP stages and independent per DP rank"
        )
    else:
        kv_rule = "GQA caches K and V per KV head; KV heads are split across TP ranks"
    lines.append(
        f"KV cache: {_gib(memory.kv_bytes)} per GPU / {memory.kv_bytes_per_token:,} B per "
        f"token = {_tokens(memory.kv_tokens_per_replica)} tokens per replica; {kv_rule}"
    )
    kv_name = (
        "FP8" if request.kv_cache_dtype == "fp8" else ("FP32" if dtype == "float32" else "BF16")
    )
    lines.append(f"KV cache dtype {kv_name} (--kv-cache-dtype {request.kv_cache_dtype})")
    lines.append(
        f"concurrency: {memory.concurrency:.1f} requests of {memory.max_model_len:,} tokens "
        f"at once ({memory.concurrency_per_replica:.1f} per replica x {memory.replicas}); "
        "shorter requests share the cache, so real concurrency is higher"
    )
    if plan_layout.ep:
        lines.append(
            f"expert parallelism: {profile.moe.routed_experts if profile.moe else 0} routed "
            f"experts over {plan_layout.ep_size} ranks (EP size = TP x DP); EP is exercised "
            "only on GPUs (it does not run on vLLM's CPU build)"
        )
    if uses_deepep(plan_layout, request.nodes):
        lines.append(
            "wide EP: DeepEP all-to-all over the site's RDMA fabric (--fabric rdma); its "
            "NVSHMEM kernels need the engine to run as root with IPC_LOCK and SYS_RAWIO on "
            "Kubernetes (engine.rdma in docs/helm.md)"
        )
    if request.nodes > 1:
        lines.append(
            "multi-node: start the head (node rank 0) and the headless workers with the same "
            "model path on every node; keep the inter-node traffic on a private network "
            "(set VLLM_HOST_IP / GLOO_SOCKET_IFNAME per node), it is unencrypted"
        )
    return tuple(lines)


def _warnings(profile: ModelProfile, request: PlanRequest, memory: MemoryEstimate) -> list[str]:
    out: list[str] = []
    if profile.test_only:
        out.append(f"{profile.name} is a test/dev model, not for production use")
    if memory.concurrency < 1.0:  # pragma: no cover - plans require one full request
        out.append("fewer than one full-length request fits")
    if profile.is_moe and profile.parameters > 100e9 and request.gpu_memory_utilization < 0.9:
        out.append("a utilization below 0.9 leaves little KV cache for a 671B model")
    if request.master_addr == HEAD_ADDRESS_PLACEHOLDER and request.nodes > 1:
        out.append(f"replace {HEAD_ADDRESS_PLACEHOLDER} with the head node's private IP "
                   "(--master-addr)")  # fmt: skip
    return out


def _try_plan(profile: ModelProfile, gpu: GpuType, request: PlanRequest) -> Plan | str:
    """A plan, or the reason (from the preferred layout) why nothing fits."""
    max_model_len = request.max_model_len or profile.context_length
    if max_model_len > profile.context_length:
        return (
            f"--max-model-len {max_model_len} exceeds {profile.display_name}'s context "
            f"length {profile.context_length}"
        )
    if request.kv_cache_dtype == "fp8" and not gpu.fp8:
        return f"{gpu.name} does not support an FP8 KV cache"
    if why := unsupported_weights(gpu, profile.weight_dtype):
        return why
    dtype = (profile.vllm_dtype or "float32") if gpu.device == "cpu" else "auto"
    weight_scale = 2.0 if profile.weight_dtype == "fp8" and not gpu.fp8 else 1.0
    if request.layout is not None:
        problem = check_layout(profile, gpu, request.layout, request.gpus_per_node, request.nodes)
        if problem:
            return f"the requested layout cannot run: {problem}"
        if uses_deepep(request.layout, request.nodes) and request.fabric != "rdma":
            return f"the requested layout cannot run: {NEEDS_RDMA_FABRIC}"
        requested = f"{request.layout.describe()}: requested (--tp/--pp/--dp/--ep)"
        options = [Candidate(request.layout, requested)]
    else:
        options = candidates(profile, gpu, request.gpus_per_node, request.nodes, request.goal)
    if not options:
        return (
            f"no tensor-parallel size fits {request.gpus_per_node} GPUs per node for "
            f"{profile.attention.num_attention_heads} attention heads"
        )
    first_reason: str | None = None
    skipped: list[str] = []
    for candidate in options:
        layout, memory, reason = _evaluate(
            profile, gpu, request, candidate.layout,
            max_model_len=max_model_len, dtype=dtype, weight_scale=weight_scale,
        )  # fmt: skip
        if reason is None and uses_deepep(layout, request.nodes) and request.fabric != "rdma":
            reason = NEEDS_RDMA_FABRIC
        if reason is not None:
            first_reason = first_reason or reason
            skipped.append(f"{candidate.layout.describe()} not chosen: {reason}")
            continue
        cpu_kv = None
        if gpu.device == "cpu":
            cpu_kv = max(1, math.floor(memory.kv_bytes / GIB))
        commands = build_commands(
            profile, gpu, layout,
            nodes=request.nodes, gpus_per_node=request.gpus_per_node,
            kv_cache_dtype=request.kv_cache_dtype, master_addr=request.master_addr,
            cpu_kv_cache_gib=cpu_kv, fabric=request.fabric,
            extra_args=lora_args(request.max_loras, request.max_lora_rank),
        )  # fmt: skip
        explanation = _explain(
            profile, gpu, request, layout, memory, candidate.why, dtype, weight_scale
        )
        return Plan(
            request=request,
            model=profile.name,
            display_name=profile.display_name,
            served_model_name=profile.served_model_name,
            gpu=gpu.key,
            gpu_name=gpu.name,
            device=gpu.device,
            layout=layout,
            memory=memory,
            max_model_len=max_model_len,
            kv_cache_dtype=request.kv_cache_dtype,
            dtype=dtype,
            gpu_memory_utilization=request.gpu_memory_utilization,
            commands=commands,
            explanation=explanation + tuple(skipped),
            warnings=tuple(_warnings(profile, request, memory)),
            cpu_kv_cache_gib=cpu_kv,
        )
    assert first_reason is not None
    return first_reason


def _describe_fit(plan: Plan) -> str:
    node = "node" if plan.nodes == 1 else "nodes"
    extra = []
    if plan.request.kv_cache_dtype == "fp8":
        extra.append("FP8 KV cache")
    if plan.request.max_model_len is not None:
        extra.append(f"--max-model-len {plan.max_model_len}")
    if plan.uses_deepep:
        extra.append("--fabric rdma")
    suffix = f", {', '.join(extra)}" if extra else ""
    return (
        f"{plan.nodes} {node} x {plan.gpus_per_node} x {plan.gpu} ({plan.layout.describe()}, "
        f"{_tokens(plan.memory.kv_tokens_total)} KV tokens{suffix})"
    )


def _suggestions(profile: ModelProfile, gpu: GpuType, request: PlanRequest) -> list[str]:
    """Nearby requests that fit: more nodes, FP8 KV cache, shorter context, other GPUs."""
    out: list[str] = []
    if request.fabric != "rdma" and gpu.device == "gpu" and request.nodes > 1:
        found = _try_plan(profile, gpu, replace(request, fabric="rdma"))
        if isinstance(found, Plan) and found.uses_deepep:
            out.append(_describe_fit(found))
    if request.layout is not None:
        found = _try_plan(profile, gpu, replace(request, layout=None))
        if isinstance(found, Plan):
            return [*out, _describe_fit(found)]
        request = replace(request, layout=None)
    if gpu.device == "gpu":
        for nodes in range(request.nodes + 1, request.nodes + 4):
            found = _try_plan(profile, gpu, replace(request, nodes=nodes))
            if isinstance(found, Plan):
                out.append(_describe_fit(found))
                break
    if request.kv_cache_dtype == "auto" and gpu.fp8:
        found = _try_plan(profile, gpu, replace(request, kv_cache_dtype="fp8"))
        if isinstance(found, Plan):
            out.append(_describe_fit(found))
    length = request.max_model_len or profile.context_length
    while length > 4096:
        length //= 2
        found = _try_plan(profile, gpu, replace(request, max_model_len=length))
        if isinstance(found, Plan):
            out.append(_describe_fit(found))
            break
    if gpu.device == "gpu":
        for other in GPU_CATALOG:
            if other.device != "gpu" or other.key == gpu.key:
                continue
            found = _try_plan(profile, other, replace(request, gpu=other.key, memory_mib=None))
            if isinstance(found, Plan):
                out.append(_describe_fit(found))
    return out


def make_plan(profile: ModelProfile, gpu: GpuType, request: PlanRequest) -> Plan:
    """Plan ``profile`` on ``gpu`` as ``request`` asks; PlanRefused says why not and
    what would fit instead."""
    found = _try_plan(profile, gpu, request)
    if isinstance(found, Plan):
        return found
    reason = f"{profile.display_name} does not fit on {_where(request, gpu)}: {found}."
    raise PlanRefused(reason, _suggestions(profile, gpu, request))
