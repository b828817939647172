"""Memory for LoRA adapters on one GPU. Pure.

vLLM reserves ``max_loras`` slots of rank ``max_lora_rank`` for every LoRA-capable
linear layer (all of them, unless ``--lora-target-modules`` narrows it): an A matrix
``(rank, in)`` and a B matrix ``(out, rank)`` per module per layer, in the LoRA dtype
(the model's by default). It is a small term beside weights and KV cache; the memory
plan (memory.estimate_memory) does not subtract it yet.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["lora_memory_bytes"]


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
