"""A chat model and an embedding model on one appliance: on the same GPUs (the chat
engine gives up the embedding engine's share) or on GPUs of their own. Pure."""

from __future__ import annotations

from dataclasses import replace

from appliance.planner.capacity import Plan, PlanRefused, PlanRequest, make_plan
from appliance.planner.embedding import EmbeddingPlan, EmbeddingRequest, embedding_memory
from appliance.planner.hardware import GpuType
from appliance.planner.memory import GIB
from appliance.planner.profiles import ModelProfile

__all__ = ["MIN_CHAT_UTILIZATION", "plan_with_embedding"]

# Below this the chat engine is left too little of each GPU to be worth planning.
MIN_CHAT_UTILIZATION = 0.05


def _gib(value: int) -> str:
    return f"{value / GIB:.2f} GiB"


def _explain(embedding: EmbeddingPlan, gpu: GpuType, chat_before: float) -> tuple[str, ...]:
    unit = "rank" if gpu.device == "cpu" else "GPU"
    lines = [
        f"embedding engine {embedding.served_model_name} ({embedding.model}, vLLM pooling "
        f"runner): weights {_gib(embedding.weight_bytes)} + activations "
        f"{_gib(embedding.activation_bytes)} ({embedding.batch_tokens:,} batch tokens) + KV "
        f"{_gib(embedding.kv_bytes)} + overhead {_gib(embedding.overhead_bytes)} = "
        f"{_gib(embedding.total_bytes)}"
    ]
    if embedding.placement == "shared":
        lines.append(
            f"embedding engine shares the chat engine's first {unit}: it takes "
            f"{embedding.gpu_memory_utilization:.2f} of it, so the chat engine's "
            f"--gpu-memory-utilization drops from {chat_before} to "
            f"{round(chat_before - embedding.gpu_memory_utilization, 2)} (its KV cache "
            f"shrinks on every {unit}); start the chat engine first"
        )
    else:
        lines.append(
            f"embedding engine on {embedding.gpus} {unit}(s) of its own (one replica each); "
            f"the chat plan is unchanged"
        )
    return tuple(lines)


def plan_with_embedding(
    profile: ModelProfile,
    gpu: GpuType,
    request: PlanRequest,
    embedding_profile: ModelProfile,
    embedding: EmbeddingRequest,
) -> Plan:
    """The chat plan with an embedding engine accounted for; PlanRefused when the two do
    not fit together (or the embedding model does not fit a GPU of its own)."""
    if embedding.max_model_len > embedding_profile.context_length:
        raise PlanRefused(
            f"embedding --max-model-len {embedding.max_model_len} exceeds "
            f"{embedding_profile.display_name}'s context length "
            f"{embedding_profile.context_length}."
        )
    device_bytes = (request.memory_mib or gpu.memory_mib) << 20
    planned = embedding_memory(
        embedding_profile, embedding, device=gpu.device,
        device_memory_bytes=device_bytes,
        gpu_memory_utilization=request.gpu_memory_utilization,
    )  # fmt: skip
    chat_before = request.gpu_memory_utilization
    if embedding.placement == "shared":
        chat_share = round(chat_before - planned.gpu_memory_utilization, 2)
        if chat_share < MIN_CHAT_UTILIZATION:
            raise PlanRefused(
                f"the embedding engine needs {_gib(planned.total_bytes)} "
                f"({planned.gpu_memory_utilization:.2f} of a {gpu.name}), leaving the chat "
                f"engine {max(chat_share, 0):.2f} of --gpu-memory-utilization {chat_before}.",
                ["--embedding-placement separate"],
            )
        chat = make_plan(profile, gpu, replace(request, gpu_memory_utilization=chat_share))
    else:
        usable = int(device_bytes * request.gpu_memory_utilization)
        if planned.total_bytes > usable:
            raise PlanRefused(
                f"the embedding engine needs {_gib(planned.total_bytes)} per GPU, more than "
                f"the {_gib(usable)} usable on one {gpu.name} at --gpu-memory-utilization "
                f"{request.gpu_memory_utilization}."
            )
        chat = make_plan(profile, gpu, request)
    return replace(
        chat,
        embedding=planned,
        explanation=chat.explanation + _explain(planned, gpu, chat_before),
    )
