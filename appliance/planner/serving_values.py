"""What a plan serves beside the chat model, as deploy values: its LoRA adapters (the
chart's ``engine.adapters``, the role's ``appliance_engine_*lora*`` variables) and its
embedding engine (``embeddingEngine``, ``appliance_engine_embedding_*``). Pure.

The chart and the role build the LoRA flags themselves (``--enable-lora --max-loras
--max-lora-rank --lora-modules``, the same on every node), so the planned slots move out
of the nodes' argv into those values: one set of flags, with the planned sizes. Adapters
come from the model store (:func:`adapter_pins` of ``appliance adapters list``), pinned
by their manifest sha256, which the chart's init container and the model-store role
verify before the engine serves them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from appliance.engine.launch import lora_rank_limit
from appliance.errors import ConfigurationError
from appliance.planner.capacity import Plan
from appliance.planner.embedding import EmbeddingPlan
from appliance.planner.memory import GIB

__all__ = [
    "AdapterPin",
    "adapter_slots",
    "ansible_adapters",
    "ansible_embedding_engine",
    "check_adapters_fit",
    "embedding_model_path",
    "embedding_notes",
    "helm_adapters",
    "helm_embedding_engine",
    "without_lora_flags",
]

_LORA_FLAGS_WITH_VALUE = ("--max-loras", "--max-lora-rank")
# Flags the chart and the role set from their own embedding values; the plan's others
# (--max-num-batched-tokens, --data-parallel-size) travel as extra args.
_EMBEDDING_OWN_FLAGS = (
    "--served-model-name", "--max-model-len", "--dtype", "--gpu-memory-utilization",
    "--runner", "--convert", "--pooler-config",
)  # fmt: skip
# Host memory of an embedding pod beyond its weights (the chart's default limit for the
# dev model is 8Gi); a GPU pod also gets this many cores per GPU, as the chat engine.
_EMBEDDING_HEADROOM_GIB = 8
_CPU_PER_GPU = 4
# vLLM's default when no --max-loras is given to an engine with adapters (LoraServing).
_DEFAULT_SLOTS = 4


@dataclass(frozen=True)
class AdapterPin:
    """One stored adapter the engine loads at start, pinned by its manifest's sha256."""

    name: str
    rank: int
    manifest_sha256: str


def adapter_slots(adapters: Sequence[AdapterPin]) -> tuple[int, int]:
    """The slots an engine takes for ``adapters`` when nothing else is asked
    (``LoraServing.args``): ``min(n, 4)`` of the largest rank; (0, 0) for none."""
    if not adapters:
        return 0, 0
    return min(len(adapters), _DEFAULT_SLOTS), max(adapter.rank for adapter in adapters)


def check_adapters_fit(plan: Plan, adapters: Sequence[AdapterPin]) -> None:
    """ConfigurationError unless the plan reserved slots that hold every adapter (the
    memory was planned for those slots; a larger rank would take more)."""
    if not adapters:
        return
    if not plan.request.max_loras:
        raise ConfigurationError(
            "the model store holds adapters for this model, but the plan has no LoRA "
            "slots: plan with --max-loras"
        )
    rank = lora_rank_limit(plan.request.max_lora_rank)
    for adapter in adapters:
        if adapter.rank > rank:
            raise ConfigurationError(
                f"adapter {adapter.name} has rank {adapter.rank}, but the plan reserved LoRA "
                f"slots of rank {rank}: plan again with --max-lora-rank {adapter.rank}"
            )


def without_lora_flags(args: Iterable[str]) -> list[str]:
    """A node's argv without the planned LoRA flags, which the chart and the role add."""
    kept: list[str] = []
    it = iter(args)
    for arg in it:
        if arg in _LORA_FLAGS_WITH_VALUE:
            next(it, None)
        elif arg != "--enable-lora":
            kept.append(arg)
    return kept


def _planned_rank(plan: Plan) -> int:
    return lora_rank_limit(plan.request.max_lora_rank)


def helm_adapters(plan: Plan, adapters: Sequence[AdapterPin]) -> dict[str, Any] | None:
    """``engine.adapters`` for a plan with LoRA slots (None without): the planned slots
    and the adapters loaded at start (none: slots for runtime loads only)."""
    check_adapters_fit(plan, adapters)
    if not plan.request.max_loras:
        return None
    return {
        "enabled": True,
        "modules": [
            {"name": a.name, "rank": a.rank, "manifestSha256": a.manifest_sha256} for a in adapters
        ],
        "maxLoras": plan.request.max_loras,
        "maxLoraRank": _planned_rank(plan),
    }


def ansible_adapters(plan: Plan, adapters: Sequence[AdapterPin]) -> dict[str, Any]:
    """The ``appliance_engine`` role's LoRA variables, and ``appliance_adapters``
    (which the model-store and gateway roles read too); empty without slots."""
    check_adapters_fit(plan, adapters)
    if not plan.request.max_loras:
        return {}
    return {
        "appliance_engine_lora_enabled": True,
        "appliance_engine_max_loras": plan.request.max_loras,
        "appliance_engine_max_lora_rank": _planned_rank(plan),
        "appliance_adapters": [
            {"name": a.name, "rank": a.rank, "manifest_sha256": a.manifest_sha256} for a in adapters
        ],
    }


def embedding_model_path(plan: Plan, model_path: str) -> str:
    """The embedding model's directory: beside the chat model's, on the same volume."""
    assert plan.embedding is not None
    return str(PurePosixPath(model_path).parent / plan.embedding.model)


@dataclass(frozen=True)
class _Serving:
    convert: str
    pooling: str
    normalize: bool
    extra_args: list[str]


def _serving(embedding: EmbeddingPlan) -> _Serving:
    """The plan's flags as the chart's and the role's embedding values."""
    flags: dict[str, str] = {}
    extra: list[str] = []
    args = list(embedding.args)
    while args:
        flag = args.pop(0)
        takes_value = bool(args) and not args[0].startswith("--")
        value = args.pop(0) if takes_value else None
        if flag in _EMBEDDING_OWN_FLAGS and value is not None:
            flags[flag] = value
        else:
            extra += [flag] if value is None else [flag, value]
    pooler = json.loads(flags.get("--pooler-config", "{}"))
    return _Serving(
        convert=flags.get("--convert", "none"),
        pooling=str(pooler.get("pooling_type", "")),
        normalize=bool(pooler.get("use_activation", True)),
        extra_args=extra,
    )


def _embedding_resources(embedding: EmbeddingPlan) -> dict[str, Any]:
    gpus = max(embedding.gpus, 1)  # shared: the chat engine's first GPU
    memory = f"{math.ceil(embedding.weight_bytes / GIB) + _EMBEDDING_HEADROOM_GIB}Gi"
    return {
        "requests": {"cpu": str(_CPU_PER_GPU * gpus), "memory": memory},
        "limits": {"nvidia.com/gpu": gpus, "memory": memory},
    }


def helm_embedding_engine(plan: Plan, model_path: str) -> dict[str, Any] | None:
    """``embeddingEngine`` for a plan with one (None without)."""
    embedding = plan.embedding
    if embedding is None:
        return None
    serving = _serving(embedding)
    values: dict[str, Any] = {
        "enabled": True,
        "model": {
            "servedModelName": embedding.served_model_name,
            "path": embedding_model_path(plan, model_path),
        },
        "device": plan.device,
        "convert": serving.convert,
        "pooling": serving.pooling,
        "normalize": serving.normalize,
        "maxModelLen": embedding.max_model_len,
        "dtype": embedding.dtype,
    }
    if plan.device == "gpu":
        values["gpuMemoryUtilization"] = embedding.gpu_memory_utilization
        values["resources"] = _embedding_resources(embedding)
    else:
        values["kvCacheGib"] = embedding.cpu_kv_cache_gib or 1
    values["extraArgs"] = serving.extra_args
    return values


def embedding_notes(plan: Plan, *, kubernetes: bool) -> list[str]:
    """Where the embedding engine's GPU comes from, when the deploy path cannot tell."""
    embedding = plan.embedding
    if embedding is None or plan.device != "gpu":
        return []
    if embedding.placement == "shared" and kubernetes:
        # The device plugin gives each GPU to one pod: the embedding pod asks for one more.
        return [
            "embedding engine placed on the chat engine's first GPU (shared): on Kubernetes",
            "its pod asks for a GPU of its own unless the nodes share GPUs (MPS); else plan",
            "with --embedding-placement separate",
        ]
    if embedding.placement == "separate" and not kubernetes:
        return [
            "embedding engine on GPUs of its own (separate): the role runs it on the head",
            "node; name its GPUs in appliance_engine_embedding_extra_env (CUDA_VISIBLE_DEVICES)",
        ]
    return []


def ansible_embedding_engine(plan: Plan, model_path: str) -> dict[str, Any]:
    """The ``appliance_engine`` role's embedding variables (empty without one): the
    role runs it on the head node."""
    embedding = plan.embedding
    if embedding is None:
        return {}
    serving = _serving(embedding)
    values: dict[str, Any] = {
        "appliance_engine_embedding_enabled": True,
        "appliance_engine_embedding_served_model_name": embedding.served_model_name,
        "appliance_engine_embedding_model_path": embedding_model_path(plan, model_path),
        "appliance_engine_embedding_device": plan.device,
        "appliance_engine_embedding_convert": serving.convert,
        "appliance_engine_embedding_pooling": serving.pooling,
        "appliance_engine_embedding_normalize": serving.normalize,
        "appliance_engine_embedding_max_model_len": embedding.max_model_len,
        "appliance_engine_embedding_dtype": embedding.dtype,
    }
    if plan.device == "gpu":
        values["appliance_engine_embedding_gpu_memory_utilization"] = (
            embedding.gpu_memory_utilization
        )
    else:
        values["appliance_engine_embedding_kv_cache_gib"] = embedding.cpu_kv_cache_gib or 1
    values["appliance_engine_embedding_extra_args"] = serving.extra_args
    return values
