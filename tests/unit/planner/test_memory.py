"""appliance/planner/memory.py: weights, KV bytes per token and KV capacity."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.planner.memory import (
    GIB,
    Layout,
    estimate_memory,
    kv_bytes_per_token,
    kv_element_bytes,
    layers_per_stage,
    weight_bytes_per_gpu,
)
from appliance.planner.profiles import ModelProfile


def test_layout_validation_and_description() -> None:
    assert Layout(tp=8, pp=2).describe() == "TP8 x PP2"
    assert Layout(tp=1, dp=8, ep=True).describe() == "DP8 + EP8"
    assert Layout(tp=8, ep=True, dcp=4).describe() == "TP8 + EP8 + DCP4"
    assert Layout(tp=2, dp=4).gpus == 8
    with pytest.raises(ValueError, match=">= 1"):
        Layout(tp=0)
    with pytest.raises(ValueError, match="divide"):
        Layout(tp=8, dcp=3)


def test_mla_kv_bytes_per_token_match_the_reference(deepseek_v3: ModelProfile) -> None:
    # Reference §2.1: 576 elements x 61 layers; 70,272 B BF16, 35,136 B FP8.
    assert kv_bytes_per_token(deepseek_v3, Layout(tp=8), "auto") == 70_272
    assert kv_bytes_per_token(deepseek_v3, Layout(tp=8), "fp8") == 35_136
    # MLA is replicated across TP: the same per GPU at TP1 and TP16.
    assert kv_bytes_per_token(deepseek_v3, Layout(tp=1), "auto") == 70_272
    assert kv_bytes_per_token(deepseek_v3, Layout(tp=16), "auto") == 70_272
    # PP2 splits layers: 31 on the fuller stage.
    assert kv_bytes_per_token(deepseek_v3, Layout(tp=8, pp=2), "auto") == 1152 * 31


@pytest.mark.parametrize(
    ("name", "per_token"),
    [  # reference §1.3, BF16, TP1
        ("deepseek-r1-distill-qwen-1.5b", 28_672),
        ("deepseek-r1-distill-qwen-7b", 57_344),
        ("deepseek-r1-distill-llama-8b", 131_072),
        ("deepseek-r1-distill-qwen-14b", 196_608),
        ("deepseek-r1-distill-qwen-32b", 262_144),
        ("deepseek-r1-distill-llama-70b", 327_680),
    ],
)
def test_gqa_kv_bytes_per_token_match_the_reference(
    profiles: dict[str, ModelProfile], name: str, per_token: int
) -> None:
    assert kv_bytes_per_token(profiles[name], Layout(), "auto") == per_token


def test_gqa_kv_heads_split_then_duplicate(profiles: dict[str, ModelProfile]) -> None:
    qwen = profiles["deepseek-r1-distill-qwen-32b"]  # 8 KV heads
    base = kv_bytes_per_token(qwen, Layout(), "auto")
    assert kv_bytes_per_token(qwen, Layout(tp=8), "auto") == base // 8
    # TP16 cannot split 8 heads further: each rank keeps one (duplicated).
    assert kv_bytes_per_token(qwen, Layout(tp=16), "auto") == base // 8


def test_element_bytes() -> None:
    assert kv_element_bytes("fp8") == 1
    assert kv_element_bytes("auto") == 2
    assert kv_element_bytes("auto", "float32") == 4


@pytest.mark.parametrize(
    ("layout", "gib"),
    [  # reference §1.2 table and §7 cheat sheet
        (Layout(tp=8, ep=True), 79),
        (Layout(tp=16), 39.5),
        (Layout(tp=8, pp=2), 39.5),
        (Layout(tp=1, dp=8, ep=True), 94),
    ],
    ids=["TP8", "TP16", "TP8xPP2", "DP8+EP8"],
)
def test_weights_per_gpu_match_the_reference(
    deepseek_v3: ModelProfile, layout: Layout, gib: float
) -> None:
    assert weight_bytes_per_gpu(deepseek_v3, layout) / GIB == pytest.approx(gib, rel=0.03)


def test_dp_without_ep_replicates_everything(deepseek_v3: ModelProfile) -> None:
    assert weight_bytes_per_gpu(deepseek_v3, Layout(tp=1, dp=8)) == weight_bytes_per_gpu(
        deepseek_v3, Layout(tp=1)
    )


def test_layers_per_stage() -> None:
    assert layers_per_stage(61, 2) == 31
    assert layers_per_stage(61, 1) == 61


def test_utilization_must_be_a_fraction(deepseek_v3: ModelProfile) -> None:
    with pytest.raises(ValueError, match="gpu_memory_utilization"):
        estimate_memory(
            deepseek_v3, Layout(tp=8), device_memory_bytes=GIB, gpu_memory_utilization=1.5,
            kv_cache_dtype="auto", max_model_len=1024,
        )  # fmt: skip


_LAYOUTS = st.builds(
    Layout,
    tp=st.sampled_from([1, 2, 4, 8, 16]),
    pp=st.sampled_from([1, 2, 4]),
    dp=st.sampled_from([1, 2, 8]),
    ep=st.booleans(),
)


@given(
    layout=_LAYOUTS,
    small=st.integers(min_value=1, max_value=300 * 1024),
    extra=st.integers(min_value=0, max_value=300 * 1024),
    kv=st.sampled_from(["auto", "fp8"]),
)
def test_kv_tokens_are_monotonic_in_gpu_memory(
    deepseek_v3: ModelProfile, layout: Layout, small: int, extra: int, kv: str
) -> None:
    def tokens(mib: int) -> int:
        return estimate_memory(
            deepseek_v3, layout, device_memory_bytes=mib << 20, gpu_memory_utilization=0.9,
            kv_cache_dtype=kv, max_model_len=4096,  # type: ignore[arg-type]
        ).kv_tokens_per_replica  # fmt: skip

    assert tokens(small + extra) >= tokens(small)


@given(layout=_LAYOUTS)
def test_fp8_kv_holds_at_least_twice_the_tokens(deepseek_v3: ModelProfile, layout: Layout) -> None:
    def tokens(kv: str) -> int:
        return estimate_memory(
            deepseek_v3, layout, device_memory_bytes=140 * GIB, gpu_memory_utilization=0.9,
            kv_cache_dtype=kv, max_model_len=4096,  # type: ignore[arg-type]
        ).kv_tokens_per_replica  # fmt: skip

    assert tokens("fp8") >= 2 * tokens("auto")


@given(tp=st.sampled_from([1, 2, 4, 8]), pp=st.sampled_from([1, 2, 4]), ep=st.booleans())
def test_more_parallelism_never_adds_weight_per_gpu(
    deepseek_v3: ModelProfile, tp: int, pp: int, ep: bool
) -> None:
    here = weight_bytes_per_gpu(deepseek_v3, Layout(tp=tp, pp=pp, ep=ep))
    assert weight_bytes_per_gpu(deepseek_v3, Layout(tp=tp * 2, pp=pp, ep=ep)) <= here
    assert weight_bytes_per_gpu(deepseek_v3, Layout(tp=tp, pp=pp * 2, ep=ep)) <= here
