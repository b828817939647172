"""appliance/engine/launch.py and plan_launch.py: vLLM's multi-LoRA flags, present
only when the served model has adapters, and adapters loaded from local paths only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.config import Settings
from appliance.engine.launch import (
    LaunchSpec,
    LoraModule,
    LoraServing,
    lora_rank_limit,
    spec_from_settings,
)
from appliance.engine.plan_launch import launch_spec_from_plan
from appliance.planner import PlanRequest, find_profile, gpu_type, make_plan

BASE = "smollm2-135m-instruct"
LORA_FLAGS = ("--enable-lora", "--max-loras", "--max-lora-rank", "--lora-modules")


def _spec(lora: LoraServing | None) -> LaunchSpec:
    return LaunchSpec(
        model_dir=Path("/models/smollm2"), served_model_name=BASE, port=8123, api_key="k",
        python="/py", extra_args=("--enforce-eager",), lora=lora,
    )  # fmt: skip


def _serving(*ranks: int, max_loras: int | None = None) -> LoraServing | None:
    modules = [
        LoraModule(f"{BASE}:a{i}", Path(f"/data/models/adapters/{BASE}/a{i}"), rank)
        for i, rank in enumerate(ranks)
    ]
    return LoraServing.of(modules, BASE, max_loras)


def test_no_adapters_no_lora_flags() -> None:
    assert _serving() is None
    argv = _spec(None).argv()
    assert not any(flag in argv for flag in LORA_FLAGS)


def test_adapters_add_the_lora_flags_before_extra_args() -> None:
    argv = _spec(_serving(8, 16)).argv()
    assert argv.count("--enable-lora") == 1
    assert argv[argv.index("--max-loras") + 1] == "2"
    assert argv[argv.index("--max-lora-rank") + 1] == "16"
    start = argv.index("--lora-modules") + 1
    modules = [json.loads(item) for item in argv[start : argv.index("--enforce-eager")]]
    assert modules == [
        {"name": f"{BASE}:a0", "path": f"/data/models/adapters/{BASE}/a0", "base_model_name": BASE},
        {"name": f"{BASE}:a1", "path": f"/data/models/adapters/{BASE}/a1", "base_model_name": BASE},
    ]
    # Local directories only: nothing that vLLM could resolve as a hub repository.
    assert all(Path(module["path"]).is_absolute() for module in modules)


def test_engines_with_adapters_stay_offline() -> None:
    env = _spec(_serving(8)).environment({}, cpu_count=2)
    assert env["HF_HUB_OFFLINE"] == "1" and env["TRANSFORMERS_OFFLINE"] == "1"


def test_runtime_loading_is_on_only_with_adapters() -> None:
    """The admin page loads and unloads adapters through vLLM's runtime LoRA routes."""
    env = _spec(_serving(8)).environment({}, cpu_count=2)
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert "VLLM_ALLOW_RUNTIME_LORA_UPDATING" not in _spec(None).environment({}, cpu_count=2)


def test_max_loras_defaults_to_the_adapter_count_up_to_four() -> None:
    argv = _spec(_serving(*[8] * 6)).argv()
    assert argv[argv.index("--max-loras") + 1] == "4"
    argv = _spec(_serving(8, 8, max_loras=6)).argv()
    assert argv[argv.index("--max-loras") + 1] == "6"


@pytest.mark.parametrize(("rank", "limit"), [(1, 1), (2, 8), (8, 8), (9, 16), (100, 128),
                                             (300, 320), (512, 512)])  # fmt: skip
def test_rank_rounds_up_to_a_value_vllm_accepts(rank: int, limit: int) -> None:
    assert lora_rank_limit(rank) == limit


def test_rank_above_vllm_maximum_is_an_error() -> None:
    with pytest.raises(ValueError, match="above vLLM's largest"):
        lora_rank_limit(513)


def test_spec_from_settings_carries_the_adapters(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert "--enable-lora" not in spec_from_settings(settings, "k").argv()
    assert "--enable-lora" in spec_from_settings(settings, "k", lora=_serving(8)).argv()


def test_every_node_of_a_plan_gets_the_lora_flags() -> None:
    request = PlanRequest("deepseek-v3", "h200", 8, 2)
    plan = make_plan(find_profile("deepseek-v3"), gpu_type("h200"), request)
    for role in ("head", "worker"):
        spec = launch_spec_from_plan(
            plan, role=role, model_dir=Path("/m"), api_key="k", port=1,  # type: ignore[arg-type]
            master_addr="10.0.0.1", lora=_serving(16),
        )  # fmt: skip
        assert "--enable-lora" in spec.argv()
