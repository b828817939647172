"""appliance/planner/report.py and commands.py: JSON round trip, Helm and Ansible
renderings, the exact vllm serve lines."""

from __future__ import annotations

import json
import shlex
from dataclasses import replace

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from appliance.errors import ConfigurationError
from appliance.planner import (
    ModelProfile,
    Plan,
    PlanRefused,
    PlanRequest,
    gpu_type,
    make_plan,
    plan_from_dict,
    plan_to_dict,
    render_ansible_vars,
    render_helm_values,
    render_json,
    render_table,
    serve_command,
)
from appliance.planner.commands import core_args
from appliance.planner.memory import Layout
from appliance.planner.profiles import ENGINE_CHAT_TEMPLATE_DIR, read_chat_template
from appliance.planner.report import chat_templates


def _plan(profile: ModelProfile, **kwargs: object) -> Plan:
    request = PlanRequest(profile.name, **kwargs)  # type: ignore[arg-type]
    return make_plan(profile, gpu_type(request.gpu), request)


def test_json_round_trip(deepseek_v3: ModelProfile) -> None:
    plan = _plan(deepseek_v3, gpu="h100", gpus_per_node=8, nodes=2, master_addr="10.1.2.3")
    data = json.loads(render_json(plan))
    assert data["fits"] is True and data["summary"]["layout"] == "TP8 x PP2"
    assert plan_from_dict(data) == plan


@settings(max_examples=30, deadline=None)
@given(
    gpu=st.sampled_from(["h200", "b200", "h20", "h100"]),
    nodes=st.sampled_from([1, 2]),
    goal=st.sampled_from(["latency", "throughput"]),
    kv=st.sampled_from(["auto", "fp8"]),
)
def test_round_trip_property(
    deepseek_v3: ModelProfile, gpu: str, nodes: int, goal: str, kv: str
) -> None:
    try:
        plan = _plan(deepseek_v3, gpu=gpu, gpus_per_node=8, nodes=nodes, goal=goal,
                     kv_cache_dtype=kv)  # fmt: skip
    except PlanRefused:
        return
    assert plan_from_dict(json.loads(json.dumps(plan_to_dict(plan)))) == plan


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"schema": "other"}, "not an appliance plan"),
        ([], "not an appliance plan"),
        ({"schema": "appliance.plan/v1", "model": "x"}, "invalid plan"),
    ],
)
def test_plan_from_dict_rejects(data: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        plan_from_dict(data)


def test_serve_command_is_the_recipe(deepseek_v3: ModelProfile) -> None:
    plan = _plan(deepseek_v3, gpu="h200", gpus_per_node=8, goal="throughput")
    line = serve_command(plan, plan.commands[0], "/models/deepseek-v3")
    argv = shlex.split(line)
    assert argv[:3] == ["vllm", "serve", "/models/deepseek-v3"]
    assert argv[argv.index("--data-parallel-size") + 1] == "8"
    assert "--enable-expert-parallel" in argv and "--trust-remote-code" not in argv
    assert argv[argv.index("--tensor-parallel-size") + 1] == "1"


def test_core_args_match_launchspec_order() -> None:
    args = core_args(Layout(tp=2, dp=2), max_model_len=512, dtype="auto",
                     gpu_memory_utilization=None)  # fmt: skip
    assert args == ("--max-model-len", "512", "--dtype", "auto", "--tensor-parallel-size", "2",
                    "--pipeline-parallel-size", "1", "--data-parallel-size", "2")  # fmt: skip


def test_helm_values(deepseek_v3: ModelProfile) -> None:
    plan = _plan(deepseek_v3, gpu="h100", gpus_per_node=8, nodes=2)
    values = yaml.safe_load(render_helm_values(plan, "/models/deepseek-v3"))["engine"]
    assert values["nodes"] == 2 and values["worker"]["replicas"] == 1
    assert values["parallelism"] == {"tensor": 8, "pipeline": 2, "data": 1, "expert": False,
                                     "decodeContext": 1}  # fmt: skip
    assert "--headless" in values["worker"]["args"]
    assert values["resources"]["limits"]["nvidia.com/gpu"] == 8
    assert values["leader"]["env"]["HF_HUB_OFFLINE"] == "1"
    assert values["startupProbe"]["failureThreshold"] * 10 >= 30 * 60  # >= 30 min (ref §5)
    assert values["shmSize"] == "16Gi"
    # host memory: the node's share of the weights (~8 x 39 GiB) + /dev/shm + headroom
    memory = int(values["resources"]["limits"]["memory"].removesuffix("Gi"))
    assert 8 * 39 + 16 < memory < 8 * 45 + 16 + 64
    assert values["resources"]["requests"]["memory"] == values["resources"]["limits"]["memory"]


def test_helm_values_cpu_plan_has_no_gpu_resources(profiles: dict[str, ModelProfile]) -> None:
    plan = _plan(profiles["smollm2-135m-instruct"], gpu="cpu", gpus_per_node=1)
    values = yaml.safe_load(render_helm_values(plan, "/models/smollm2"))["engine"]
    assert values["shmSize"] == "1Gi" and "resources" not in values


def test_ansible_vars(deepseek_v3: ModelProfile) -> None:
    plan = _plan(deepseek_v3, gpu="h200", gpus_per_node=8)
    data = yaml.safe_load(render_ansible_vars(plan, "/srv/models/deepseek-v3"))
    assert all(key.startswith("appliance_engine_") for key in data)
    assert data["appliance_engine_tensor_parallel_size"] == 8
    assert "--enable-expert-parallel" in data["appliance_engine_node_args"][0]


def test_table_mentions_the_numbers(deepseek_v3: ModelProfile) -> None:
    plan = _plan(deepseek_v3, gpu="h200", gpus_per_node=8)
    console = Console(width=200, record=True)
    console.print(render_table(plan, "/models/deepseek-v3"))
    text = console.export_text()
    assert "TP8 + EP8" in text and "KV tokens" in text and "max concurrency" in text
    assert "vllm serve /models/deepseek-v3" in text


def test_helm_values_carry_the_chat_template_the_args_name(
    profiles: dict[str, ModelProfile],
) -> None:
    plan = _plan(profiles["deepseek-r1"], gpu="h200", gpus_per_node=8)
    text = render_helm_values(plan, "/models/deepseek-r1")
    values = yaml.safe_load(text)["engine"]
    args = values["leader"]["args"]
    path = args[args.index("--chat-template") + 1]
    directory, _, name = path.rpartition("/")
    assert directory == ENGINE_CHAT_TEMPLATE_DIR
    assert values["chatTemplates"] == {name: read_chat_template(name)}
    # Readable in the values file: a literal block, the special tokens as they are.
    assert f"  {name}: |\n" in text and "<\uff5ctool\u2581calls\u2581begin\uff5c>" in text


def test_ansible_vars_carry_the_chat_template_raw(profiles: dict[str, ModelProfile]) -> None:
    plan = _plan(profiles["deepseek-v3"], gpu="h100", gpus_per_node=8, nodes=2)
    data = yaml.safe_load(render_ansible_vars(plan, "/srv/models/deepseek-v3"))
    name = "tool_chat_template_deepseekv3.jinja"
    # Ansible renders the Jinja of a variable it reads: the role gets the text verbatim.
    assert data["appliance_engine_chat_templates"] == {
        name: "{% raw %}" + read_chat_template(name) + "{% endraw %}"
    }
    for args in data["appliance_engine_node_args"].values():
        assert args[args.index("--chat-template") + 1] == f"{ENGINE_CHAT_TEMPLATE_DIR}/{name}"


def test_plans_without_a_template_carry_none(profiles: dict[str, ModelProfile]) -> None:
    plan = _plan(profiles["deepseek-r1-distill-qwen-7b"], gpu="h100", gpus_per_node=1)
    assert chat_templates(plan) == {}
    assert "chatTemplates" not in yaml.safe_load(render_helm_values(plan, "/m"))["engine"]
    data = yaml.safe_load(render_ansible_vars(plan, "/m"))
    assert data["appliance_engine_chat_templates"] == {}


def test_a_template_outside_the_deploy_directory_is_refused(
    profiles: dict[str, ModelProfile],
) -> None:
    plan = _plan(profiles["deepseek-v3"], gpu="h200", gpus_per_node=8)
    head = plan.commands[0]
    args = tuple(
        "/opt/elsewhere/t.jinja" if a.startswith(ENGINE_CHAT_TEMPLATE_DIR) else a
        for a in head.extra_args
    )
    moved = replace(plan, commands=(replace(head, extra_args=args),))
    with pytest.raises(ConfigurationError, match="re-run the planner"):
        chat_templates(moved)
