"""appliance/planner/lora.py: memory vLLM reserves for LoRA slots, and the plan that
subtracts it (PlanRequest.max_loras / max_lora_rank)."""

from __future__ import annotations

import json

import pytest

from appliance.planner import (
    ModelProfile,
    Plan,
    PlanRefused,
    PlanRequest,
    gpu_type,
    make_plan,
    plan_from_dict,
    render_json,
)
from appliance.planner.lora import lora_bytes_per_gpu, lora_memory_bytes
from appliance.planner.memory import GIB, Layout

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


# -- the plan: PlanRequest(max_loras, max_lora_rank) ----------------------------------
SMOL = "smollm2-135m-instruct"


def _smol_plan(profiles: dict[str, ModelProfile], **lora: int) -> Plan:
    request = PlanRequest(model=SMOL, gpu="cpu", gpus_per_node=1, **lora)
    return make_plan(profiles[SMOL], gpu_type("cpu"), request)


def test_slots_are_subtracted_from_the_kv_cache(profiles: dict[str, ModelProfile]) -> None:
    plain = _smol_plan(profiles)
    with_lora = _smol_plan(profiles, max_loras=4, max_lora_rank=16)
    expected = lora_bytes_per_gpu(profiles[SMOL], plain.layout, 4, 16, "float32")
    assert plain.memory.lora_bytes == 0
    assert with_lora.memory.lora_bytes == expected > 0
    assert with_lora.memory.kv_bytes == plain.memory.kv_bytes - expected
    assert with_lora.memory.kv_tokens_per_replica < plain.memory.kv_tokens_per_replica
    assert any(line.startswith("LoRA: 4 adapter slots of rank 16") for line in
               with_lora.explanation)  # fmt: skip


def test_smollm2_module_dims_match_its_config(profiles: dict[str, ModelProfile]) -> None:
    # q, k, v, o (ATTENTION) + gate, up, down at intermediate 1536 (config.json), fp32,
    # plus the embedding and LM head (49152 x 576).
    mlp = [(576, 1536), (576, 1536), (1536, 576)]
    layers = lora_memory_bytes(max_loras=2, max_rank=8, module_dims=ATTENTION + mlp,
                               num_layers=30, dtype_bytes=4)  # fmt: skip
    vocab = 2 * 8 * 2 * (49152 + 576) * 4
    assert lora_bytes_per_gpu(profiles[SMOL], Layout(), 2, 8, "float32") == layers + vocab


def test_many_large_slots_refuse_a_plan_that_fits_without(
    profiles: dict[str, ModelProfile],
) -> None:
    _smol_plan(profiles)
    with pytest.raises(PlanRefused, match="of LoRA slots, but only"):
        _smol_plan(profiles, max_loras=64, max_lora_rank=512)


def test_commands_carry_the_lora_flags_with_the_rank_rounded_up(
    profiles: dict[str, ModelProfile],
) -> None:
    plan = _smol_plan(profiles, max_loras=3, max_lora_rank=12)
    args = plan.command("head").extra_args
    assert args[-5:] == ("--enable-lora", "--max-loras", "3", "--max-lora-rank", "16")
    assert "--enable-lora" not in _smol_plan(profiles).command("head").extra_args


def test_moe_lora_is_refused_with_expert_parallelism(deepseek_v3: ModelProfile) -> None:
    layout = Layout(tp=8, ep=True)
    request = PlanRequest(model="deepseek-v3", gpu="h200", gpus_per_node=8, layout=layout,
                          max_loras=1, max_lora_rank=8)  # fmt: skip
    with pytest.raises(PlanRefused, match="does not support expert parallelism"):
        make_plan(deepseek_v3, gpu_type("h200"), request)
    # Every routed expert holds slots on every GPU: tens of GiB for DeepSeek-V3.
    assert lora_bytes_per_gpu(deepseek_v3, Layout(tp=8), 4, 16, "auto") > 40 * GIB


def test_json_round_trip_keeps_the_slots(profiles: dict[str, ModelProfile]) -> None:
    plan = _smol_plan(profiles, max_loras=4, max_lora_rank=16)
    data = json.loads(render_json(plan))
    assert data["summary"]["lora_gib_per_gpu"] == round(plan.memory.lora_bytes / GIB, 3)
    back = plan_from_dict(data)
    assert back == plan
    assert (back.request.max_loras, back.memory.lora_bytes) == (4, plan.memory.lora_bytes)


@pytest.mark.parametrize(("loras", "rank"), [(4, 0), (0, 16), (-1, 8), (1, 1024)])
def test_lora_request_validation(loras: int, rank: int) -> None:
    with pytest.raises(ValueError):
        PlanRequest(model=SMOL, gpu="cpu", gpus_per_node=1, max_loras=loras, max_lora_rank=rank)
