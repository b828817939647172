"""appliance/planner/serving_values.py, through report.py's renderers: LoRA slots and
stored adapters as engine.adapters / the role's LoRA variables, the embedding engine as
embeddingEngine / appliance_engine_embedding_*."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from appliance.errors import ConfigurationError
from appliance.planner import (
    EmbeddingRequest,
    ModelProfile,
    Plan,
    PlanRequest,
    gpu_type,
    make_plan,
    plan_with_embedding,
    render_ansible_vars,
    render_helm_values,
)
from appliance.planner.serving_values import (
    AdapterPin,
    adapter_slots,
    check_adapters_fit,
    without_lora_flags,
)

ROLE_SPECS = (
    Path(__file__).resolve().parents[3] / "ansible/roles/appliance_engine/meta/argument_specs.yml"
)
LORA_FLAGS = {"--enable-lora", "--max-loras", "--max-lora-rank"}
PINS = (AdapterPin("legal-v1", 8, "a" * 64), AdapterPin("hr", 12, "b" * 64))


@pytest.fixture(scope="module")
def dev(profiles: dict[str, ModelProfile]) -> ModelProfile:
    return profiles["smollm2-135m-instruct"]


def _plan(profile: ModelProfile, gpu: str = "cpu", **kwargs: Any) -> Plan:
    request = PlanRequest(profile.name, gpu=gpu, gpus_per_node=1, **kwargs)
    return make_plan(profile, gpu_type(gpu), request)


def _with_embedding(profile: ModelProfile, gpu: str, **embedding: Any) -> Plan:
    request = PlanRequest(profile.name, gpu=gpu, gpus_per_node=1)
    wanted = EmbeddingRequest(model=profile.name, **embedding)
    return plan_with_embedding(profile, gpu_type(gpu), request, profile, wanted)


def _helm(plan: Plan, adapters: tuple[AdapterPin, ...] = ()) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(
        render_helm_values(plan, "/models/smollm2-135m-instruct", adapters=adapters)
    )
    return data


def _ansible(plan: Plan, adapters: tuple[AdapterPin, ...] = ()) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(
        render_ansible_vars(plan, "/models/smollm2-135m-instruct", adapters=adapters)
    )
    return data


def test_without_lora_flags_drops_only_the_slot_flags() -> None:
    args = ["--dtype", "auto", "--enable-lora", "--max-loras", "4", "--max-lora-rank", "16",
            "--reasoning-parser", "deepseek_r1"]  # fmt: skip
    assert without_lora_flags(args) == ["--dtype", "auto", "--reasoning-parser", "deepseek_r1"]


def test_adapter_slots_are_what_an_engine_takes_unasked() -> None:
    assert adapter_slots(()) == (0, 0)
    assert adapter_slots(PINS) == (2, 12)
    many = tuple(AdapterPin(f"a{i}", 4, "c" * 64) for i in range(6))
    assert adapter_slots(many) == (4, 4)  # LoraServing: at most 4 in one batch


def test_no_slots_no_adapter_values(dev: ModelProfile) -> None:
    plan = _plan(dev)
    values = _helm(plan)
    assert "adapters" not in values["engine"]
    variables = _ansible(plan)
    assert "appliance_engine_lora_enabled" not in variables
    assert "appliance_adapters" not in variables


def test_slots_move_from_the_argv_into_engine_adapters(dev: ModelProfile) -> None:
    plan = _plan(dev, max_loras=3, max_lora_rank=12)
    assert LORA_FLAGS <= set(plan.command("head").extra_args)
    engine = _helm(plan, PINS)["engine"]
    assert not LORA_FLAGS & set(engine["leader"]["args"])
    assert engine["adapters"] == {
        "enabled": True,
        "modules": [
            {"name": "legal-v1", "rank": 8, "manifestSha256": "a" * 64},
            {"name": "hr", "rank": 12, "manifestSha256": "b" * 64},
        ],
        "maxLoras": 3,
        "maxLoraRank": 16,  # 12 rounded up to a rank vLLM accepts, as the memory was planned
    }
    # Slots without stored adapters: for runtime loads.
    assert _helm(plan)["engine"]["adapters"]["modules"] == []


def test_slots_in_the_ansible_variables(dev: ModelProfile) -> None:
    plan = _plan(dev, max_loras=2, max_lora_rank=8)
    variables = _ansible(plan, PINS[:1])
    assert not LORA_FLAGS & set(variables["appliance_engine_node_args"][0])
    assert variables["appliance_engine_lora_enabled"] is True
    assert variables["appliance_engine_max_loras"] == 2
    assert variables["appliance_engine_max_lora_rank"] == 8
    assert variables["appliance_adapters"] == [
        {"name": "legal-v1", "rank": 8, "manifest_sha256": "a" * 64}
    ]


def test_adapters_must_fit_the_planned_slots(dev: ModelProfile) -> None:
    with pytest.raises(ConfigurationError, match="no LoRA slots"):
        check_adapters_fit(_plan(dev), PINS)
    small = _plan(dev, max_loras=2, max_lora_rank=8)
    with pytest.raises(ConfigurationError, match="--max-lora-rank 12"):
        _helm(small, PINS)
    with pytest.raises(ConfigurationError, match="--max-lora-rank 12"):
        _ansible(small, PINS)


def test_embedding_engine_on_a_shared_gpu(dev: ModelProfile) -> None:
    plan = _with_embedding(dev, "h100")
    assert plan.embedding is not None
    text = render_helm_values(plan, "/models/smollm2-135m-instruct")
    assert "--embedding-placement separate" in text.split("engine:", 1)[0]  # header note
    embedding = yaml.safe_load(text)["embeddingEngine"]
    assert embedding["enabled"] is True
    assert embedding["model"] == {
        "servedModelName": plan.embedding.served_model_name,
        "path": "/models/smollm2-135m-instruct",
    }
    assert embedding["device"] == "gpu"
    assert embedding["gpuMemoryUtilization"] == plan.embedding.gpu_memory_utilization
    assert (embedding["convert"], embedding["pooling"], embedding["normalize"]) == (
        "embed", "LAST", True,
    )  # fmt: skip
    assert embedding["maxModelLen"] == plan.embedding.max_model_len
    assert embedding["extraArgs"] == ["--max-num-batched-tokens", str(plan.embedding.batch_tokens)]
    assert embedding["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "kvCacheGib" not in embedding


def test_embedding_engine_on_gpus_of_its_own(dev: ModelProfile) -> None:
    plan = _with_embedding(dev, "h100", placement="separate", gpus=2, max_model_len=256)
    text = render_helm_values(plan, "/srv/weights/smollm2-135m-instruct")
    assert "--embedding-placement" not in text  # nothing to warn about
    embedding = yaml.safe_load(text)["embeddingEngine"]
    assert embedding["model"]["path"] == "/srv/weights/smollm2-135m-instruct"
    assert embedding["maxModelLen"] == 256
    assert embedding["extraArgs"][-2:] == ["--data-parallel-size", "2"]
    assert embedding["resources"]["limits"]["nvidia.com/gpu"] == 2
    variables = yaml.safe_load(render_ansible_vars(plan, "/srv/weights/smollm2-135m-instruct"))
    assert variables["appliance_engine_embedding_extra_args"][-2:] == ["--data-parallel-size", "2"]
    header = render_ansible_vars(plan, "/m/x").split("appliance_engine_model_name", 1)[0]
    assert "CUDA_VISIBLE_DEVICES" in header


def test_embedding_engine_on_cpu_in_both_formats(dev: ModelProfile) -> None:
    plan = _with_embedding(dev, "cpu")
    assert plan.embedding is not None
    embedding = _helm(plan)["embeddingEngine"]
    assert embedding["device"] == "cpu" and embedding["dtype"] == "float32"
    assert embedding["kvCacheGib"] == plan.embedding.cpu_kv_cache_gib
    assert "gpuMemoryUtilization" not in embedding and "resources" not in embedding
    variables = _ansible(plan)
    assert variables["appliance_engine_embedding_enabled"] is True
    assert variables["appliance_engine_embedding_served_model_name"] == "smollm2-135m-embed"
    assert variables["appliance_engine_embedding_kv_cache_gib"] == plan.embedding.cpu_kv_cache_gib
    assert "embeddingEngine" not in _helm(_plan(dev))
    assert "appliance_engine_embedding_enabled" not in _ansible(_plan(dev))


def test_every_emitted_role_variable_is_one_the_role_declares(dev: ModelProfile) -> None:
    specs = yaml.safe_load(ROLE_SPECS.read_text(encoding="utf-8"))
    declared = set(specs["argument_specs"]["main"]["options"])
    declared.add("appliance_adapters")  # site-wide: the engine, model-store, gateway roles
    plan = _with_embedding(dev, "h100")
    for variables in (_ansible(plan), _ansible(_plan(dev, max_loras=2, max_lora_rank=8), PINS[:1])):
        assert set(variables) - declared == set()
