"""appliance/planner/hardware.py: the GPU catalog."""

from __future__ import annotations

import pytest

from appliance.planner.hardware import GPU_CATALOG, WITHDRAWN_GPUS, gpu_type

# The issue's GPUs, less MI300X: withdrawn, no deploy path runs ROCm (test_recipes.py).
REQUIRED = {"h100", "h200", "h20", "h800", "a100", "l40s", "b200"}


def test_catalog_has_the_issue_gpus() -> None:
    assert REQUIRED <= {gpu.key for gpu in GPU_CATALOG}


def test_keys_are_unique_and_memory_plausible() -> None:
    keys = [gpu.key for gpu in GPU_CATALOG]
    assert len(keys) == len(set(keys))
    for gpu in GPU_CATALOG:
        if gpu.device == "gpu":
            assert 40 <= gpu.memory_gib <= 200, gpu


def test_memory_matches_the_reference() -> None:
    assert gpu_type("h100").memory_gib == pytest.approx(79.6, abs=0.1)  # reference §1.2
    assert gpu_type("h200").memory_mib == 143771  # reference §6.2


def test_fp8_support() -> None:
    assert gpu_type("h200").fp8 and gpu_type("b200").fp8
    assert not gpu_type("a100").fp8


def test_fp4_and_architectures() -> None:
    assert [gpu.key for gpu in GPU_CATALOG if gpu.fp4] == ["b200"]
    assert {gpu.key for gpu in GPU_CATALOG if gpu.hopper} == {"h100", "h200", "h20", "h800"}
    assert gpu_type("b200").blackwell and not gpu_type("h200").blackwell
    assert all(gpu.vendor in ("nvidia", "cpu") for gpu in GPU_CATALOG)


def test_withdrawn_gpus_are_not_in_the_catalog() -> None:
    assert not set(WITHDRAWN_GPUS) & {gpu.key for gpu in GPU_CATALOG}
    with pytest.raises(ValueError, match="not planned"):
        gpu_type("mi300x")


def test_lookup_is_case_insensitive_and_names_the_known() -> None:
    assert gpu_type(" H200 ").key == "h200"
    with pytest.raises(ValueError, match="known: h100"):
        gpu_type("v100")
