"""appliance/planner/lora.py: memory vLLM reserves for LoRA slots."""

from __future__ import annotations

import pytest

from appliance.planner.lora import lora_memory_bytes

# SmolLM2-135M: q, k, v, o projections (in, out); 30 layers.
ATTENTION = [(576, 576), (576, 192), (576, 192), (576, 576)]


def test_formula() -> None:
    # 4 slots x rank 16 x (1152 + 768 + 768 + 1152) x 2 bytes x 30 layers
    assert lora_memory_bytes(max_loras=4, max_rank=16, module_dims=ATTENTION,
                             num_layers=30) == 4 * 16 * 3840 * 2 * 30  # fmt: skip


def test_pipeline_stages_split_layers_and_terms_scale_linearly() -> None:
    one = lora_memory_bytes(max_loras=1, max_rank=8, module_dims=ATTENTION, num_layers=30)
    assert lora_memory_bytes(max_loras=1, max_rank=8, module_dims=ATTENTION, num_layers=30,
                             pp=2) == one // 2  # fmt: skip
    assert lora_memory_bytes(max_loras=2, max_rank=16, module_dims=ATTENTION, num_layers=30,
                             dtype_bytes=4) == one * 8  # fmt: skip
    assert lora_memory_bytes(max_loras=1, max_rank=8, module_dims=[], num_layers=30) == 0


def test_non_positive_inputs_are_refused() -> None:
    with pytest.raises(ValueError):
        lora_memory_bytes(max_loras=0, max_rank=8, module_dims=ATTENTION, num_layers=30)
