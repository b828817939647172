"""The rendered engine commands of every shipped profile: no --trust-remote-code unless
the profile asks for it explicitly (vLLM serves DeepseekV3ForCausalLM, Qwen2 and Llama
natively; remote code from a weights directory is code execution)."""

from __future__ import annotations

import shlex
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from appliance.planner import (
    ModelProfile,
    Plan,
    PlanRefused,
    PlanRequest,
    gpu_type,
    make_plan,
    serve_command,
)
from appliance.planner.profiles import default_profiles_dir, profile_from_data

# (gpu, gpus per node, nodes): the first one that fits a profile is rendered.
HARDWARE = [("cpu", 1, 1), ("h100", 1, 1), ("h200", 8, 1), ("h100", 8, 2)]
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
