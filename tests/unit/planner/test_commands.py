"""The rendered engine commands of every shipped profile: no --trust-remote-code unless
the profile asks for it explicitly (vLLM serves DeepseekV3ForCausalLM, Qwen2 and Llama
natively; remote code from a weights directory is code execution); DeepEP only where the
site declared an RDMA fabric."""

from __future__ import annotations

import json
import shlex
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from appliance.planner import (
    Fabric,
    Layout,
    ModelProfile,
    NodeCommand,
    Plan,
    PlanRefused,
    PlanRequest,
    gpu_type,
    make_plan,
    plan_from_dict,
    render_json,
    serve_command,
)
from appliance.planner.commands import build_commands
from appliance.planner.profiles import default_profiles_dir, profile_from_data

# (gpu, gpus per node, nodes): the first one that fits a profile is rendered.
HARDWARE = [("cpu", 1, 1), ("h100", 1, 1), ("h200", 8, 1), ("h100", 8, 2), ("b200", 4, 1)]
NATIVE_ARCHITECTURES = {"DeepseekV3ForCausalLM", "Qwen2ForCausalLM", "LlamaForCausalLM"}


def _plans(profile: ModelProfile) -> list[Plan]:
    plans = []
    for gpu, per_node, nodes in HARDWARE:
        request = PlanRequest(profile.name, gpu=gpu, gpus_per_node=per_node, nodes=nodes)
        try:
            plans.append(make_plan(profile, gpu_type(gpu), request))
        except PlanRefused:
            continue
    assert plans, f"{profile.name} fits none of {HARDWARE}"
    return plans


def _argvs(plan: Plan) -> list[list[str]]:
    return [shlex.split(serve_command(plan, c, "/models/m")) for c in plan.commands]


def test_every_shipped_profile_is_native_and_runs_without_remote_code(
    profiles: dict[str, ModelProfile],
) -> None:
    assert len(profiles) >= 10
    for name, profile in profiles.items():
        assert profile.architecture in NATIVE_ARCHITECTURES, name
        assert profile.trust_remote_code is False, name
        for plan in _plans(profile):
            for argv in _argvs(plan):
                assert "--trust-remote-code" not in argv, (name, plan.gpu, argv)
            for command in plan.commands:
                assert "--trust-remote-code" not in command.extra_args


@pytest.mark.parametrize(
    "name", ["deepseek-v3", "deepseek-v3-0324", "deepseek-r1", "deepseek-r1-0528"]
)
def test_deepseek_profiles_keep_their_recipe_flags(
    profiles: dict[str, ModelProfile], name: str
) -> None:
    plan = make_plan(
        profiles[name], gpu_type("h200"), PlanRequest(name, gpu="h200", gpus_per_node=8)
    )
    (argv,) = _argvs(plan)
    assert "--enable-expert-parallel" in argv
    assert argv[argv.index("--tool-call-parser") + 1] == "deepseek_v3"
    # Tool calling needs the recipe's tool chat template, where the deploy paths put it.
    template = "deepseekr1" if "-r1" in name else "deepseekv3"
    assert argv[argv.index("--chat-template") + 1] == (
        f"/etc/appliance/chat-templates/tool_chat_template_{template}.jinja"
    )


def test_an_explicit_trust_remote_code_profile_passes_the_flag() -> None:
    path = Path(default_profiles_dir()) / "deepseek-v3.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["vllm"]["trust_remote_code"] = True
    profile = profile_from_data(data, source=str(path))
    for plan in _plans(profile):
        for argv in _argvs(plan):
            assert argv.count("--trust-remote-code") == 1


def test_trust_remote_code_defaults_to_off_when_the_profile_is_silent() -> None:
    path = Path(default_profiles_dir()) / "deepseek-v3.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    del data["vllm"]["trust_remote_code"]
    assert profile_from_data(data).trust_remote_code is False


def test_plan_commands_follow_the_profile_flag(profiles: dict[str, ModelProfile]) -> None:
    trusted = replace(profiles["deepseek-r1-distill-qwen-7b"], trust_remote_code=True)
    (plan, *_) = _plans(trusted)
    assert all("--trust-remote-code" in c.extra_args for c in plan.commands)


# --- the site's fabric: DeepEP only over RDMA -------------------------------------------


def _argv_flag(args: tuple[str, ...], flag: str) -> str | None:
    return args[args.index(flag) + 1] if flag in args else None


def test_build_commands_emits_deepep_only_with_an_rdma_fabric(deepseek_v3: ModelProfile) -> None:
    def build(fabric: Fabric) -> tuple[NodeCommand, ...]:
        return build_commands(
            deepseek_v3, gpu_type("h200"), Layout(tp=1, dp=16, ep=True),
            nodes=2, gpus_per_node=8, kv_cache_dtype="auto", fabric=fabric,
        )  # fmt: skip

    with pytest.raises(ValueError, match="--fabric rdma"):
        build("none")
    commands = build("rdma")
    assert [_argv_flag(c.extra_args, "--all2all-backend") for c in commands] == [
        "deepep_low_latency", "deepep_low_latency"
    ]  # fmt: skip


@pytest.mark.parametrize("fabric", ["none", "rdma"])
def test_layouts_without_wide_ep_never_use_deepep(
    deepseek_v3: ModelProfile, fabric: Fabric
) -> None:
    cases = [
        PlanRequest("deepseek-v3", "h200", 8, goal="throughput", fabric=fabric),  # DP8 + EP8
        PlanRequest("deepseek-v3", "h100", 8, nodes=2, fabric=fabric),  # TP8 x PP2
        PlanRequest("deepseek-v3", "h100", 8, nodes=2, fabric=fabric, layout=Layout(tp=16)),
    ]
    for request in cases:
        plan = make_plan(deepseek_v3, gpu_type(request.gpu), request)
        assert not plan.uses_deepep
        assert all("--all2all-backend" not in c.extra_args for c in plan.commands)
        assert plan.needs_rdma is (fabric == "rdma" and request.nodes > 1)


def test_wide_ep_without_a_fabric_falls_back_and_says_why(deepseek_v3: ModelProfile) -> None:
    request = PlanRequest("deepseek-v3", "h200", 8, nodes=2, goal="throughput")
    plan = make_plan(deepseek_v3, gpu_type("h200"), request)
    assert plan.layout.describe() == "TP8 x PP2"
    (skipped,) = [line for line in plan.explanation if line.startswith("DP16 + EP16 not chosen")]
    assert "DeepEP" in skipped and "--fabric rdma" in skipped
    wide = make_plan(deepseek_v3, gpu_type("h200"), replace(request, fabric="rdma"))
    assert wide.layout.describe() == "DP16 + EP16" and wide.uses_deepep and wide.needs_rdma
    assert any(line.startswith("wide EP: DeepEP") for line in wide.explanation)


def test_requested_wide_ep_without_a_fabric_is_refused(deepseek_v3: ModelProfile) -> None:
    request = PlanRequest("deepseek-v3", "h200", 8, nodes=2, layout=Layout(tp=1, dp=16, ep=True))
    with pytest.raises(PlanRefused) as caught:
        make_plan(deepseek_v3, gpu_type("h200"), request)
    refusal = caught.value
    assert "the requested layout cannot run: wide EP across nodes" in refusal.reason
    assert "InfiniBand/RoCE" in refusal.reason and "--fabric rdma" in refusal.reason
    assert refusal.suggestions[0].startswith("2 nodes x 8 x h200 (DP16 + EP16")
    assert refusal.suggestions[0].endswith("--fabric rdma)")
    assert any("TP8 x PP2" in s for s in refusal.suggestions)  # or without wide EP


def test_the_fabric_survives_the_plan_file(deepseek_v3: ModelProfile) -> None:
    request = PlanRequest("deepseek-v3", "h200", 8, nodes=2, goal="throughput", fabric="rdma")
    plan = make_plan(deepseek_v3, gpu_type("h200"), request)
    data = json.loads(render_json(plan))
    assert data["request"]["fabric"] == "rdma"
    assert plan_from_dict(data) == plan
    del data["request"]["fabric"]  # a plan file written before --fabric existed
    assert plan_from_dict(data).request.fabric == "none"


def test_cpu_plans_of_float32_mla_models_ask_for_the_reference_mla_backend(
    profiles: dict[str, ModelProfile],
) -> None:
    """vLLM's AMX MLA backend (chosen on any AMX CPU) refuses float32 weights."""
    tiny = profiles["tiny-deepseek-v3"]
    assert tiny.attention.kind == "mla"
    cpu_plan = make_plan(tiny, gpu_type("cpu"), PlanRequest(tiny.name, gpu="cpu", gpus_per_node=1))
    assert cpu_plan.dtype == "float32"
    argv = _argvs(cpu_plan)[0]
    assert argv[argv.index("--attention-backend") + 1] == "CPU_MLA"
    # In bfloat16 the AMX backend works: vLLM keeps its own choice.
    bf16 = replace(tiny, vllm_dtype="bfloat16")
    assert (
        "--attention-backend"
        not in _argvs(
            make_plan(bf16, gpu_type("cpu"), PlanRequest(bf16.name, gpu="cpu", gpus_per_node=1))
        )[0]
    )
    # GPU plans and GQA models never carry it.
    for name, profile in profiles.items():
        for plan in _plans(profile):
            if plan.device != "cpu" or profile.attention.kind != "mla":
                assert all("--attention-backend" not in a for a in _argvs(plan)), name
