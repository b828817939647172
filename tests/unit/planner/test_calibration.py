"""Published calibration points (shared/reference/deepseek_vllm.md) reproduced by the
planner within +-20 %. Derived worked examples are checked with the same tolerance."""

from __future__ import annotations

import pytest

from appliance.planner import ModelProfile, PlanRequest, gpu_type, make_plan
from appliance.planner.capacity import Goal
from appliance.planner.memory import KvCacheDtype

TOLERANCE = 0.20


def _plan(
    profile: ModelProfile, gpu: str, *, nodes: int = 1, goal: Goal = "latency",
    kv: KvCacheDtype = "auto", max_model_len: int | None = None,
):  # type: ignore[no-untyped-def]  # fmt: skip
    request = PlanRequest(
        profile.name, gpu, 8, nodes, goal, kv_cache_dtype=kv, max_model_len=max_model_len
    )
    return make_plan(profile, gpu_type(gpu), request)


def test_red_hat_8xh200_tp8_bf16_kv_holds_512k_tokens(deepseek_v3: ModelProfile) -> None:
    # "On an 8x H200 setup, token capacity expanded from 54,560 to 512,000" (TP8, BF16
    # KV; Red Hat / Neural Magic, vLLM 0.7.1, reference §2.4). Published.
    plan = _plan(deepseek_v3, "h200")
    assert plan.layout.tp == 8
    assert plan.memory.kv_tokens_per_replica == pytest.approx(512_000, rel=TOLERANCE)


def test_vllm_blog_tp_leaves_34gb_per_h200(deepseek_v3: ModelProfile) -> None:
    # "The TP strategy shows 34GB free device memory per H200" (vLLM blog
    # 2025-12-17-large-scale-serving, reference §1.2). Published.
    plan = _plan(deepseek_v3, "h200")
    assert plan.memory.kv_bytes / 1e9 == pytest.approx(34, rel=TOLERANCE)


@pytest.mark.parametrize(
    ("gpu", "nodes", "goal", "kv", "layout", "tokens"),
    [  # reference §2.4 worked examples [derived there: util 0.9, 8-14 GiB overhead]
        ("h200", 1, "latency", "fp8", "TP8 + EP8", 1_000_000),
        ("h200", 1, "throughput", "auto", "DP8 + EP8", 345_000),
        ("h200", 1, "throughput", "fp8", "DP8 + EP8", 690_000),
        ("h100", 2, "latency", "auto", "TP8 x PP2", 720_000),
        ("h100", 2, "latency", "fp8", "TP8 x PP2", 1_400_000),
    ],
)
def test_worked_examples(
    deepseek_v3: ModelProfile, gpu: str, nodes: int, goal: Goal, kv: KvCacheDtype,
    layout: str, tokens: int,
) -> None:  # fmt: skip
    plan = _plan(deepseek_v3, gpu, nodes=nodes, goal=goal, kv=kv)
    assert plan.layout.describe() == layout
    assert plan.memory.kv_tokens_per_replica == pytest.approx(tokens, rel=TOLERANCE)


def test_worked_example_tp16_halves_tp8xpp2(deepseek_v3: ModelProfile) -> None:
    # "2x(8xH100) TP16: ~360k" vs TP8xPP2 ~720k: TP16 caches all 61 layers per rank.
    from appliance.planner.memory import Layout, estimate_memory

    memory = estimate_memory(
        deepseek_v3, Layout(tp=16), device_memory_bytes=gpu_type("h100").memory_bytes,
        gpu_memory_utilization=0.9, kv_cache_dtype="auto", max_model_len=32768,
    )  # fmt: skip
    assert memory.kv_tokens_per_replica == pytest.approx(360_000, rel=TOLERANCE)


def test_concurrency_at_32k(deepseek_v3: ModelProfile) -> None:
    # reference §2.4: 8xH200 TP8 "~15 / ~31 concurrent" at 32k (BF16 / FP8).
    bf16 = _plan(deepseek_v3, "h200", max_model_len=32768)
    fp8 = _plan(deepseek_v3, "h200", kv="fp8", max_model_len=32768)
    assert bf16.memory.concurrency == pytest.approx(15, rel=TOLERANCE)
    assert fp8.memory.concurrency == pytest.approx(31, rel=TOLERANCE)
