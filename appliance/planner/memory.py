"""Memory math per GPU: weights, KV cache bytes per token, KV capacity. Pure.

The rules (shared/reference/deepseek_vllm.md §1.2, §2):

- weights: non-expert weights split across TP and PP ranks; routed experts split
  across TP x DP ranks when expert parallelism is on (EP size = TP x DP), else across
  TP ranks; a DP replica without EP holds a whole copy per TP group.
- MLA KV cache: one (kv_lora_rank + qk_rope_head_dim) latent per token per layer,
  replicated on every TP rank, split across PP stages, sharded by decode context
  parallelism (DCP), independent per DP rank.
- GQA KV cache: 2 x kv_heads x head_dim per token per layer, kv heads split across TP
  ranks (duplicated once TP exceeds the kv heads).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from appliance.planner.profiles import ModelProfile

__all__ = [
    "GIB",
    "KvCacheDtype",
    "Layout",
    "MemoryEstimate",
    "estimate_memory",
    "kv_bytes_per_token",
    "kv_element_bytes",
    "layers_per_stage",
    "weight_bytes_per_gpu",
]

GIB = 1 << 30
KvCacheDtype = Literal["auto", "fp8"]


@dataclass(frozen=True)
class Layout:
    """How the model is spread: tensor, pipeline, data parallel sizes, expert parallelism
    on/off and the decode context parallel size."""

    tp: int = 1
    pp: int = 1
    dp: int = 1
    ep: bool = False
    dcp: int = 1

    def __post_init__(self) -> None:
        if min(self.tp, self.pp, self.dp, self.dcp) < 1:
            raise ValueError("parallel sizes must be >= 1")
        if self.tp % self.dcp:
            raise ValueError("decode context parallel size must divide the TP size")

    @property
    def gpus(self) -> int:
        return self.tp * self.pp * self.dp

    @property
    def ep_size(self) -> int:
        return self.tp * self.dp if self.ep else 1

    def describe(self) -> str:
        """``TP8 x PP2``, ``DP8 + EP8``, ``TP8 + EP8 + DCP8``."""
        core = [] if self.tp == 1 and self.dp > 1 else [f"TP{self.tp}"]
        if self.pp > 1:
            core.append(f"PP{self.pp}")
        parts = [" x ".join(core)] if core else []
        if self.dp > 1:
            parts.append(f"DP{self.dp}")
        if self.ep:
            parts.append(f"EP{self.ep_size}")
        if self.dcp > 1:
            parts.append(f"DCP{self.dcp}")
        return " + ".join(parts)


def layers_per_stage(num_layers: int, pp: int) -> int:
    """Layers on the fullest pipeline stage."""
    return math.ceil(num_layers / pp)


def weight_bytes_per_gpu(
    profile: ModelProfile, layout: Layout, *, weight_scale: float = 1.0
) -> int:
    """Bytes of weights one GPU holds. ``weight_scale`` 2.0 sizes an FP8 checkpoint as
    BF16 (GPUs without FP8 support)."""
    dense = profile.dense_weight_bytes * weight_scale
    experts = profile.expert_weight_bytes * weight_scale
    expert_ranks = layout.tp * layout.dp if layout.ep else layout.tp
    per_gpu = dense / (layout.tp * layout.pp) + experts / (expert_ranks * layout.pp)
    return math.ceil(per_gpu)


def kv_element_bytes(kv_cache_dtype: KvCacheDtype, dtype: str = "auto") -> int:
    """Bytes per cached element: fp8 is 1; auto follows the activation dtype the engine
    runs with (``--dtype``): 4 for float32, else 2 (BF16/FP16)."""
    if kv_cache_dtype == "fp8":
        return 1
    return 4 if dtype in ("float32", "float") else 2


def kv_bytes_per_token(
    profile: ModelProfile, layout: Layout, kv_cache_dtype: KvCacheDtype, *, dtype: str = "auto"
) -> int:
    """KV cache bytes one GPU stores per token (before DCP sharding)."""
    attention = profile.attention
    element = kv_element_bytes(kv_cache_dtype, dtype)
    layers = layers_per_stage(attention.num_layers, layout.pp)
    if attention.kind == "mla":
        per_layer = (attention.kv_lora_rank + attention.qk_rope_head_dim) * element
    else:
        heads_per_rank = math.ceil(attention.num_kv_heads / layout.tp)
        per_layer = 2 * heads_per_rank * attention.head_dim * element
    return per_layer * layers


@dataclass(frozen=True)
class MemoryEstimate:
    """Per-GPU memory budget and the KV capacity it leaves (bytes and tokens)."""

    usable_bytes: int
    weight_bytes: int
    overhead_bytes: int
    kv_bytes: int
    kv_bytes_per_token: int
    kv_tokens_per_replica: int
    replicas: int
    max_model_len: int
    lora_bytes: int = 0  # LoRA adapter slots (lora.py), taken from the KV cache

    @property
    def fits_weights(self) -> bool:
        return self.kv_bytes > 0

    @property
    def kv_tokens_total(self) -> int:
        return self.kv_tokens_per_replica * self.replicas

    @property
    def concurrency_per_replica(self) -> float:
        """Full-length requests one replica holds at once (vLLM's "maximum concurrency")."""
        return self.kv_tokens_per_replica / self.max_model_len

    @property
    def concurrency(self) -> float:
        return self.concurrency_per_replica * self.replicas


def estimate_memory(
    profile: ModelProfile,
    layout: Layout,
    *,
    device_memory_bytes: int,
    gpu_memory_utilization: float,
    kv_cache_dtype: KvCacheDtype,
    max_model_len: int,
    dtype: str = "auto",
    weight_scale: float = 1.0,
    lora_bytes: int = 0,
) -> MemoryEstimate:
    """The vLLM budget: ``memory x utilization - weights - overhead - LoRA slots`` is
    KV cache."""
    if not 0 < gpu_memory_utilization <= 1:
        raise ValueError("gpu_memory_utilization must be in (0, 1]")
    usable = math.floor(device_memory_bytes * gpu_memory_utilization)
    weights = weight_bytes_per_gpu(profile, layout, weight_scale=weight_scale)
    overhead = math.ceil(profile.runtime_overhead_gib * GIB)
    kv = usable - weights - overhead - lora_bytes
    per_token = kv_bytes_per_token(profile, layout, kv_cache_dtype, dtype=dtype)
    tokens = max(0, kv) // per_token * layout.dcp
    return MemoryEstimate(
        usable_bytes=usable,
        weight_bytes=weights,
        overhead_bytes=overhead,
        kv_bytes=kv,
        kv_bytes_per_token=per_token,
        kv_tokens_per_replica=tokens,
        replicas=layout.dp,
        max_model_len=max_model_len,
        lora_bytes=lora_bytes,
    )
