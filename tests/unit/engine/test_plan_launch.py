"""appliance/engine/plan_launch.py: a plan's node as a LaunchSpec."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.engine.launch import LoraModule, LoraServing
from appliance.engine.plan_launch import HeadlessLaunchSpec, launch_spec_from_plan, read_plan
from appliance.errors import ConfigurationError
from appliance.planner import (
    Plan,
    PlanRequest,
    find_profile,
    gpu_type,
    make_plan,
    render_json,
)

MODEL_DIR = Path("/models/m")


def _plan(model: str, gpu: str, gpn: int, nodes: int = 1, **kwargs: object) -> Plan:
    request = PlanRequest(model, gpu, gpn, nodes, **kwargs)  # type: ignore[arg-type]
    return make_plan(find_profile(model), gpu_type(gpu), request)


def _flag(argv: list[str], name: str) -> str:
    assert argv.count(name) == 1, argv
    return argv[argv.index(name) + 1]


def test_head_on_h200_is_vllm_serve_with_the_recipe_flags() -> None:
    plan = _plan("deepseek-v3", "h200", 8)
    spec = launch_spec_from_plan(plan, role="head", model_dir=MODEL_DIR, api_key="k", port=8100,
                                 python="/py")  # fmt: skip
    argv = spec.argv()
    assert argv[:5] == ["/py", "-m", "appliance.engine.vllm_cli", "serve", "/models/m"]
    assert "--model" not in argv and "--headless" not in argv
    assert _flag(argv, "--tensor-parallel-size") == "8"
    assert _flag(argv, "--gpu-memory-utilization") == "0.9"
    assert _flag(argv, "--max-model-len") == "163840"
    assert "--enable-expert-parallel" in argv and "--trust-remote-code" not in argv
    env = spec.environment({}, cpu_count=8)
    # vLLM 0.32 chooses the FP8 MoE kernel by flag (VLLM_USE_FLASHINFER_MOE_FP8 is gone).
    assert _flag(argv, "--moe-backend") == "flashinfer_cutlass"
    assert "VLLM_USE_FLASHINFER_MOE_FP8" not in env and env["HF_HUB_OFFLINE"] == "1"
    assert env["VLLM_API_KEY"] == "k" and "k" not in argv


def test_worker_runs_headless_through_vllm_serve() -> None:
    plan = _plan("deepseek-v3", "h100", 8, nodes=2)
    spec = launch_spec_from_plan(plan, role="worker", model_dir=MODEL_DIR, api_key="k",
                                 port=8100, master_addr="10.0.0.7", python="/py")  # fmt: skip
    assert isinstance(spec, HeadlessLaunchSpec)
    argv = spec.argv()
    assert argv[:5] == ["/py", "-m", "appliance.engine.vllm_cli", "serve", "/models/m"]
    assert _flag(argv, "--master-addr") == "10.0.0.7"
    assert _flag(argv, "--node-rank") == "1"
    assert argv[-1] == "--headless"


def test_multi_node_without_head_address_is_refused() -> None:
    plan = _plan("deepseek-v3", "h100", 8, nodes=2)
    with pytest.raises(ConfigurationError, match="--master-addr"):
        launch_spec_from_plan(plan, role="head", model_dir=MODEL_DIR, api_key="k", port=1)


def test_cpu_plan_sets_kv_space_and_binding() -> None:
    plan = _plan("tiny-deepseek-v3", "cpu", 2, max_model_len=512, memory_mib=2048)
    spec = launch_spec_from_plan(plan, role="head", model_dir=MODEL_DIR, api_key="k", port=1)
    argv = spec.argv()
    assert _flag(argv, "--dtype") == "float32"
    assert _flag(argv, "--tensor-parallel-size") == "2"
    assert "--gpu-memory-utilization" not in argv
    env = spec.environment({}, cpu_count=2)
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == "0|1"
    assert env["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"


def test_read_plan(tmp_path: Path) -> None:
    plan = _plan("deepseek-r1", "h200", 8)
    path = tmp_path / "plan.json"
    path.write_text(render_json(plan))
    assert read_plan(path) == plan
    path.write_text("{")
    with pytest.raises(ConfigurationError, match="not JSON"):
        read_plan(path)
    path.write_text(json.dumps({"fits": False, "reason": "too big"}))
    with pytest.raises(ConfigurationError, match="refusal: too big"):
        read_plan(path)
    with pytest.raises(ConfigurationError, match="cannot read"):
        read_plan(tmp_path / "missing.json")


def test_tls_applies_to_the_head_only() -> None:
    from appliance.engine.launch import EngineTls

    tls = EngineTls(Path("/pki/e.crt"), Path("/pki/e.key"), Path("/pki/ca.crt"))
    plan = _plan("deepseek-v3", "h100", 8, nodes=2, master_addr="10.0.0.1")
    head = launch_spec_from_plan(plan, role="head", model_dir=MODEL_DIR, api_key="k",
                                 port=8100, tls=tls)  # fmt: skip
    worker = launch_spec_from_plan(plan, role="worker", model_dir=MODEL_DIR, api_key="k",
                                   port=8100, tls=tls)  # fmt: skip
    assert _flag(head.argv(), "--ssl-cert-reqs") == "2"
    assert head.url.startswith("https://")
    # A headless worker serves no HTTP: no certificate flags.
    assert isinstance(worker, HeadlessLaunchSpec)
    assert not [arg for arg in worker.argv() if arg.startswith("--ssl")]


def test_a_chat_template_missing_on_this_host_comes_from_the_package() -> None:
    plan = _plan("deepseek-v3", "h200", 8)
    spec = launch_spec_from_plan(plan, role="head", model_dir=MODEL_DIR, api_key="k", port=1)
    template = Path(_flag(spec.argv(), "--chat-template"))
    if Path("/etc/appliance/chat-templates", template.name).is_file():
        pytest.skip("this host has the deployed templates")
    assert template.is_file() and template.name == "tool_chat_template_deepseekv3.jinja"
    assert "tool" in template.read_text(encoding="utf-8")


def _adapters(*ranks: int) -> LoraServing:
    modules = [LoraModule(f"m:a{i}", Path(f"/store/a{i}"), rank) for i, rank in enumerate(ranks)]
    served = LoraServing.of(modules, "m")
    assert served is not None
    return served


def test_a_plan_with_lora_slots_keeps_them_and_the_adapters_join_once() -> None:
    plan = _plan("deepseek-r1-distill-llama-8b", "h100", 1, max_loras=6, max_lora_rank=32)
    spec = launch_spec_from_plan(plan, role="head", model_dir=MODEL_DIR, api_key="k", port=1,
                                 lora=_adapters(8, 16))  # fmt: skip
    argv = spec.argv()
    assert argv.count("--enable-lora") == 1
    assert (_flag(argv, "--max-loras"), _flag(argv, "--max-lora-rank")) == ("6", "32")
    assert len(json.loads(argv[argv.index("--lora-modules") + 2])) == 3  # a JSON object


def test_an_adapter_larger_than_the_planned_rank_is_refused() -> None:
    plan = _plan("deepseek-r1-distill-llama-8b", "h100", 1, max_loras=2, max_lora_rank=8)
    with pytest.raises(ConfigurationError, match=r"rank 16.*--max-lora-rank 16"):
        launch_spec_from_plan(plan, role="head", model_dir=MODEL_DIR, api_key="k", port=1,
                              lora=_adapters(16))  # fmt: skip


def test_without_planned_slots_the_adapters_bring_their_own() -> None:
    plan = _plan("deepseek-r1-distill-llama-8b", "h100", 1)
    argv = launch_spec_from_plan(plan, role="head", model_dir=MODEL_DIR, api_key="k", port=1,
                                 lora=_adapters(8, 16)).argv()  # fmt: skip
    assert (_flag(argv, "--max-loras"), _flag(argv, "--max-lora-rank")) == ("2", "16")
