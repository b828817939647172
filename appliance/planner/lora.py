"""Memory for LoRA adapter slots on one GPU, and the flags that reserve them. Pure.

vLLM reserves ``--max-loras`` slots of rank ``--max-lora-rank`` for every LoRA-capable
layer (all of them, unless ``--lora-target-modules`` narrows it): an A matrix
``(rank, in)`` and a B matrix ``(out, rank)`` per module per layer, in the LoRA dtype
(the model's; BF16 for FP8 checkpoints). The planner subtracts this from what is left
for the KV cache (``estimate_memory(lora_bytes=...)``), so a plan with many large slots
can be refused.

The module dims come from the profile, as a conservative bound:

- attention: GQA ``q, k, v, o``; MLA ``q (hidden -> heads x head_dim), kv_a (hidden ->
  kv_lora_rank + rope), kv_b (kv_lora_rank -> 2 x heads x head_dim), o``;
- dense MLP ``gate, up, down``: the intermediate size is not in the profile; for a
  dense model it is solved from the parameter count (embeddings counted once, which
  over-estimates it when they are untied); for an MoE model's dense layers it is
  ``(experts_per_token + shared_experts) x moe_intermediate_size`` (DeepSeek-V3: 18432);
- MoE layers: vLLM's ``FusedMoEWithLoRA`` holds ``gate, up, down`` slots for every
  local expert and refuses expert parallelism ("EP support for Fused MoE LoRA is not
  implemented yet"), so every routed expert is on every GPU; plus the shared experts;
- the embedding and the LM head (vocab x hidden), counted on the fullest stage.

Not divided by TP: vLLM shards one matrix of each pair and replicates the other (unless
``--fully-sharded-loras``), so this bounds one GPU.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from appliance.engine.launch import lora_rank_limit
from appliance.planner.memory import Layout
from appliance.planner.profiles import ModelProfile

__all__ = [
    "LORA_NEEDS_NO_EP",
    "check_lora_request",
    "lora_args",
    "lora_bytes_per_gpu",
    "lora_explanation",
    "lora_memory_bytes",
    "lora_problem",
]

LORA_NEEDS_NO_EP = (
    "vLLM's fused-MoE LoRA does not support expert parallelism; plan without EP "
    "(--no-ep or another layout) or without --max-loras"
)


def lora_memory_bytes(
    *,
    max_loras: int,
    max_rank: int,
    module_dims: Iterable[tuple[int, int]],
    num_layers: int,
    dtype_bytes: int = 2,
    pp: int = 1,
) -> int:
    """``max_loras x rank x sum((in + out) per module) x dtype bytes x layers`` on the
    fullest pipeline stage. Not divided by TP: vLLM shards one matrix of each pair and
    replicates the other (unless ``--fully-sharded-loras``), so this bounds one GPU."""
    if min(max_loras, max_rank, num_layers, dtype_bytes, pp) < 1:
        raise ValueError("LoRA memory inputs must be positive")
    per_layer = sum(in_dim + out_dim for in_dim, out_dim in module_dims)
    layers = math.ceil(num_layers / pp)
    return max_loras * max_rank * per_layer * dtype_bytes * layers


def check_lora_request(max_loras: int, max_lora_rank: int) -> None:
    """ValueError unless both are 0 (no LoRA) or ``max_loras >= 1`` with a rank vLLM
    can hold."""
    if max_loras == 0 and max_lora_rank == 0:
        return
    if max_loras < 1 or max_lora_rank < 1:
        raise ValueError("max_loras and max_lora_rank must both be >= 1 (or both 0)")
    lora_rank_limit(max_lora_rank)


def lora_args(max_loras: int, max_lora_rank: int) -> tuple[str, ...]:
    """The engine flags for the slots; the rank rounded up to one vLLM accepts.
    ValueError where :func:`check_lora_request` refuses them."""
    check_lora_request(max_loras, max_lora_rank)
    if max_loras == 0:
        return ()
    rank = str(lora_rank_limit(max_lora_rank))
    return ("--enable-lora", "--max-loras", str(max_loras), "--max-lora-rank", rank)


def lora_explanation(max_loras: int, max_lora_rank: int, lora_bytes: int) -> str:
    """The plan's "why" line for the slots."""
    return (
        f"LoRA: {max_loras} adapter slots of rank {lora_rank_limit(max_lora_rank)} take "
        f"{lora_bytes / (1 << 30):.2f} GiB per GPU from the KV cache (--enable-lora; a "
        "conservative bound: every LoRA-capable module, not divided by TP)"
    )


def lora_problem(profile: ModelProfile, layout: Layout, max_loras: int) -> str | None:
    """Why ``layout`` cannot serve LoRA slots, or None."""
    if max_loras and profile.is_moe and layout.ep:
        return LORA_NEEDS_NO_EP
    return None


def _dense_intermediate(profile: ModelProfile, attention_params: int) -> int:
    if profile.moe is not None:
        moe = profile.moe
        return (moe.experts_per_token + moe.shared_experts) * moe.moe_intermediate_size
    layers = profile.attention.num_layers
    rest = profile.parameters - profile.vocab_size * profile.hidden_size
    per_layer = max(0, rest // layers - attention_params)
    return max(1, per_layer // (3 * profile.hidden_size))


def _attention_dims(profile: ModelProfile) -> list[tuple[int, int]]:
    attention, hidden = profile.attention, profile.hidden_size
    heads = attention.num_attention_heads * attention.head_dim
    if attention.kind == "mla":
        latent = attention.kv_lora_rank
        return [(hidden, heads), (hidden, latent + attention.qk_rope_head_dim),
                (latent, 2 * heads), (heads, hidden)]  # fmt: skip
    kv = attention.num_kv_heads * attention.head_dim
    return [(hidden, heads), (hidden, kv), (hidden, kv), (heads, hidden)]


def lora_bytes_per_gpu(
    profile: ModelProfile, layout: Layout, max_loras: int, max_lora_rank: int, dtype: str
) -> int:
    """The slots' bytes on the fullest GPU (0 without LoRA); ``dtype`` is the engine's
    ``--dtype`` (float32 on CPU, else the model's 16-bit dtype)."""
    if max_loras == 0:
        return 0
    rank = lora_rank_limit(max_lora_rank)
    hidden = profile.hidden_size
    dtype_bytes = 4 if dtype in ("float32", "float") else 2
    attention = _attention_dims(profile)
    intermediate = _dense_intermediate(profile, sum(i * o for i, o in attention))
    mlp = [(hidden, intermediate), (hidden, intermediate), (intermediate, hidden)]
    layers, moe = profile.attention.num_layers, profile.moe
    moe_layers = moe.moe_layers if moe is not None else 0

    def slots(dims: Iterable[tuple[int, int]], num_layers: int) -> int:
        if num_layers < 1:
            return 0
        return lora_memory_bytes(
            max_loras=max_loras, max_rank=rank, module_dims=dims,
            num_layers=num_layers, dtype_bytes=dtype_bytes, pp=layout.pp,
        )  # fmt: skip

    total = slots(attention, layers) + slots(mlp, layers - moe_layers)
    if moe is not None:
        expert = [(hidden, moe.moe_intermediate_size)] * 2 + [(moe.moe_intermediate_size, hidden)]
        shared = [(i, o * max(moe.shared_experts, 0)) for i, o in expert[:2]]
        shared.append((moe.moe_intermediate_size * moe.shared_experts, hidden))
        total += slots(expert * moe.routed_experts, moe_layers)
        if moe.shared_experts:
            total += slots(shared, moe_layers)
    vocab = [(profile.vocab_size, hidden), (hidden, profile.vocab_size)]  # embedding, LM head
    return total + max_loras * rank * sum(i + o for i, o in vocab) * dtype_bytes
