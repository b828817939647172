"""appliance/planner/embedding.py and colocate.py: an embedding engine planned beside
the chat engine, on its GPUs or on GPUs of its own."""

from __future__ import annotations

import json

import pytest

from appliance.planner import (
    EmbeddingRequest,
    ModelProfile,
    PlanRefused,
    PlanRequest,
    gpu_type,
    make_plan,
    plan_from_dict,
    plan_to_dict,
    plan_with_embedding,
)
from appliance.planner.embedding import ACTIVATION_FACTOR, embedding_memory
from appliance.planner.memory import GIB


@pytest.fixture(scope="module")
def smollm(profiles: dict[str, ModelProfile]) -> ModelProfile:
    return profiles["smollm2-135m-instruct"]


def test_memory_terms(smollm: ModelProfile) -> None:
    request = EmbeddingRequest(model=smollm.name, max_model_len=512, batch_tokens=4096)
    plan = embedding_memory(
        smollm, request, device="gpu", device_memory_bytes=80 * GIB, gpu_memory_utilization=0.9
    )
    assert plan.weight_bytes == smollm.dense_weight_bytes  # fp32 weights, all of them
    # fp32 checkpoint, dtype auto: 4-byte activations; 576 hidden.
    assert plan.activation_bytes == 4096 * 576 * 4 * ACTIVATION_FACTOR
    # GQA KV for the batch: 30 layers x 2 x 3 heads x 64 x 2 bytes (auto -> BF16).
    assert plan.kv_bytes == 4096 * 30 * 2 * 3 * 64 * 2
    assert plan.overhead_bytes == GIB // 2
    assert plan.total_bytes == (
        plan.weight_bytes + plan.activation_bytes + plan.kv_bytes + plan.overhead_bytes
    )
    # Its share: the need over 80 GiB, rounded up to a hundredth.
    assert plan.gpu_memory_utilization == 0.02
    args = list(plan.args)
    assert args[args.index("--runner") + 1] == "pooling"
    assert args[args.index("--convert") + 1] == "embed"
    assert args[args.index("--gpu-memory-utilization") + 1] == "0.02"
    assert args[args.index("--max-num-batched-tokens") + 1] == "4096"
    assert plan.served_model_name == "smollm2-135m-embed"


def test_cpu_sizes_a_kv_cache_instead_of_a_share(smollm: ModelProfile) -> None:
    plan = embedding_memory(
        smollm, EmbeddingRequest(model=smollm.name), device="cpu",
        device_memory_bytes=4 * GIB, gpu_memory_utilization=0.9,
    )  # fmt: skip
    assert plan.dtype == "float32" and plan.cpu_kv_cache_gib == 1
    assert "--gpu-memory-utilization" not in plan.args


def test_shared_takes_its_share_from_the_chat_engine(
    smollm: ModelProfile, deepseek_v3: ModelProfile
) -> None:
    h200 = gpu_type("h200")
    request = PlanRequest(model="deepseek-v3", gpu="h200", gpus_per_node=8)
    alone = make_plan(deepseek_v3, h200, request)
    both = plan_with_embedding(
        deepseek_v3, h200, request, smollm, EmbeddingRequest(model=smollm.name)
    )
    assert both.embedding is not None and both.embedding.placement == "shared"
    share = both.embedding.gpu_memory_utilization
    assert share > 0
    assert both.gpu_memory_utilization == round(0.9 - share, 2)
    assert both.memory.kv_tokens_total < alone.memory.kv_tokens_total
    head = both.command("head")
    assert head is not None
    assert any("drops from 0.9" in line for line in both.explanation)
    assert plan_to_dict(both)["summary"]["gpus_total"] == 8


def test_separate_leaves_the_chat_plan_alone(smollm: ModelProfile) -> None:
    l40s = gpu_type("l40s")
    request = PlanRequest(model=smollm.name, gpu="l40s", gpus_per_node=1)
    alone = make_plan(smollm, l40s, request)
    both = plan_with_embedding(
        smollm, l40s, request, smollm,
        EmbeddingRequest(model=smollm.name, placement="separate", gpus=2),
    )  # fmt: skip
    assert both.memory == alone.memory
    assert both.gpu_memory_utilization == alone.gpu_memory_utilization
    assert both.embedding is not None and both.embedding.gpus == 2
    assert "--data-parallel-size" in both.embedding.args
    assert plan_to_dict(both)["summary"]["gpus_total"] == 3


def test_refused_when_the_two_do_not_fit(smollm: ModelProfile) -> None:
    cpu = gpu_type("cpu")
    request = PlanRequest(model=smollm.name, gpu="cpu", gpus_per_node=1, memory_mib=1024)
    with pytest.raises(PlanRefused) as refused:
        plan_with_embedding(smollm, cpu, request, smollm, EmbeddingRequest(model=smollm.name))
    assert "leaving the chat engine" in refused.value.reason
    separate = EmbeddingRequest(model=smollm.name, placement="separate")
    with pytest.raises(PlanRefused, match="usable on one"):
        plan_with_embedding(smollm, cpu, request, smollm, separate)
    too_long = EmbeddingRequest(model=smollm.name, max_model_len=100_000, batch_tokens=100_000)
    with pytest.raises(PlanRefused, match="context length"):
        plan_with_embedding(smollm, gpu_type("h100"), request, smollm, too_long)


def test_json_round_trip(smollm: ModelProfile) -> None:
    request = PlanRequest(model=smollm.name, gpu="h100", gpus_per_node=1)
    plan = plan_with_embedding(
        smollm, gpu_type("h100"), request, smollm, EmbeddingRequest(model=smollm.name)
    )
    assert plan_from_dict(json.loads(json.dumps(plan_to_dict(plan)))) == plan


def test_request_checks() -> None:
    with pytest.raises(ValueError, match="gpus"):
        EmbeddingRequest(model="m", gpus=0)
    with pytest.raises(ValueError, match="one max_model_len"):
        EmbeddingRequest(model="m", max_model_len=512, batch_tokens=256)
