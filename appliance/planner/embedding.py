"""Memory for an embedding engine beside the chat engine. Pure.

An embedding model served by vLLM's pooling runner needs, on its one GPU (it runs at
TP 1; an embedding model is small):

- weights: the profile's whole model. A causal LM converted with ``--convert embed``
  drops its LM head, but a tied head is the input embedding, so the full size is the
  bound;
- activations of the largest step: ``batch tokens x hidden size x activation bytes x``
  :data:`ACTIVATION_FACTOR` (hidden state, residual, Q/K/V and a Llama-style MLP's
  gate and up projections live at once, with headroom);
- a KV cache for one step: a causal LM pools through its causal attention, so vLLM
  keeps KV blocks for the batch (``--max-num-batched-tokens``, at least one
  ``--max-model-len`` request);
- the profile's runtime overhead.

Placement:

- ``shared``: on the chat engine's GPUs (the first of them). Its share of one GPU, as
  ``--gpu-memory-utilization`` rounded up to 0.01, comes off the chat engine's, whose
  KV cache shrinks by as much on every GPU (vLLM takes one utilization for all ranks).
  Start the chat engine first: each vLLM instance checks at start that its share is
  free.
- ``separate``: its own GPU(s), one replica each (``--data-parallel-size``); it must fit
  one GPU at the requested utilization. The chat plan is unchanged.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Literal

from appliance.planner.memory import GIB, Layout, kv_bytes_per_token
from appliance.planner.profiles import DTYPE_BYTES, ModelProfile

__all__ = [
    "ACTIVATION_FACTOR",
    "DEFAULT_BATCH_TOKENS",
    "EmbeddingPlan",
    "EmbeddingRequest",
    "Placement",
    "embedding_memory",
    "embedding_served_name",
]

ACTIVATION_FACTOR = 16
DEFAULT_BATCH_TOKENS = 8192  # vLLM's --max-num-batched-tokens default on GPUs
Placement = Literal["shared", "separate"]


@dataclass(frozen=True)
class EmbeddingRequest:
    """What the admin asks for the embedding engine."""

    model: str  # profile name
    placement: Placement = "shared"
    gpus: int = 1  # separate placement: GPUs (replicas) of its own
    max_model_len: int = 512
    batch_tokens: int | None = None  # default: max(max_model_len, DEFAULT_BATCH_TOKENS)
    served_model_name: str | None = None  # default: embedding_served_name(profile)

    def __post_init__(self) -> None:
        if self.gpus < 1:
            raise ValueError("embedding gpus must be >= 1")
        if self.max_model_len < 16:
            raise ValueError("embedding max_model_len must be >= 16")
        if self.batch_tokens is not None and self.batch_tokens < self.max_model_len:
            raise ValueError("embedding batch tokens must hold one max_model_len input")

    @property
    def step_tokens(self) -> int:
        return self.batch_tokens or max(self.max_model_len, DEFAULT_BATCH_TOKENS)


@dataclass(frozen=True)
class EmbeddingPlan:
    """The embedding engine of a plan: its memory per GPU, its share and its flags."""

    model: str
    served_model_name: str
    placement: Placement
    gpus: int  # GPUs of its own (0: shares the chat engine's)
    max_model_len: int
    batch_tokens: int
    dtype: str
    weight_bytes: int
    activation_bytes: int
    kv_bytes: int
    overhead_bytes: int
    gpu_memory_utilization: float  # its --gpu-memory-utilization (GPU plans)
    cpu_kv_cache_gib: int | None  # VLLM_CPU_KVCACHE_SPACE (CPU plans)
    args: tuple[str, ...]  # vllm serve flags after the model path

    @property
    def total_bytes(self) -> int:
        return self.weight_bytes + self.activation_bytes + self.kv_bytes + self.overhead_bytes


def embedding_served_name(profile: ModelProfile) -> str:
    """``smollm2-135m-instruct`` -> ``smollm2-135m-embed``; otherwise ``<name>-embed``."""
    base = profile.served_model_name
    for suffix in ("-instruct", "-chat"):
        base = base.removesuffix(suffix)
    return f"{base}-embed"


def _compute_bytes(profile: ModelProfile, device: str) -> tuple[str, int]:
    """The engine's --dtype and the bytes of one activation element."""
    if device == "cpu":
        dtype = profile.vllm_dtype or "float32"
        return dtype, 4 if dtype in ("float32", "float") else 2
    # auto: the checkpoint's dtype; FP8/FP4 checkpoints compute in BF16.
    return "auto", max(2, DTYPE_BYTES.get(profile.weight_dtype, 2))


def embedding_memory(
    profile: ModelProfile,
    request: EmbeddingRequest,
    *,
    device: Literal["cpu", "gpu"],
    device_memory_bytes: int,
    gpu_memory_utilization: float,
) -> EmbeddingPlan:
    """The embedding engine's memory on one device, and the share it takes there:
    ``shared`` its own need (rounded up to 0.01 of the device), ``separate`` the
    requested utilization. Whether it fits is the caller's question
    (:func:`appliance.planner.colocate.plan_with_embedding`)."""
    dtype, element = _compute_bytes(profile, device)
    tokens = request.step_tokens
    weights = profile.dense_weight_bytes + profile.expert_weight_bytes
    activations = tokens * profile.hidden_size * element * ACTIVATION_FACTOR
    kv = kv_bytes_per_token(profile, Layout(), "auto", dtype=dtype) * tokens
    overhead = math.ceil(profile.runtime_overhead_gib * GIB)
    need = weights + activations + kv + overhead
    if request.placement == "shared":
        share = math.ceil(need / device_memory_bytes * 100) / 100
    else:
        share = gpu_memory_utilization
    cpu_kv = max(1, math.ceil(kv / GIB)) if device == "cpu" else None
    served = request.served_model_name or embedding_served_name(profile)
    # A causal LM is converted, pooled at its last token and normalised (what the
    # appliance's embedding engine states too); an embedding model keeps its own pooling.
    convert: list[str] = []
    if profile.architecture.endswith("ForCausalLM"):
        pooler = json.dumps({"pooling_type": "LAST", "use_activation": True}, separators=(",", ":"))
        convert = ["--convert", "embed", "--pooler-config", pooler]
    args = [
        "--served-model-name", served,
        "--runner", "pooling", *convert,
        "--max-model-len", str(request.max_model_len),
        "--max-num-batched-tokens", str(tokens),
        "--dtype", dtype,
    ]  # fmt: skip
    if device == "gpu":
        args += ["--gpu-memory-utilization", f"{share:.2f}"]
    gpus = request.gpus if request.placement == "separate" else 0
    if gpus > 1:
        args += ["--data-parallel-size", str(gpus)]
    return EmbeddingPlan(
        model=profile.name,
        served_model_name=served,
        placement=request.placement,
        gpus=gpus,
        max_model_len=request.max_model_len,
        batch_tokens=tokens,
        dtype=dtype,
        weight_bytes=weights,
        activation_bytes=activations,
        kv_bytes=kv,
        overhead_bytes=overhead,
        gpu_memory_utilization=share,
        cpu_kv_cache_gib=cpu_kv,
        args=tuple(args),
    )
