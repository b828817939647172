"""The chart carries the plan's chat templates to the upstream engine image (which has no
appliance package): a ConfigMap holding exactly the template files, mounted read-only
where the engine's --chat-template points, on the leader and on every worker."""

from __future__ import annotations

from typing import Any

import pytest

from appliance.planner.profiles import ENGINE_CHAT_TEMPLATE_DIR, read_chat_template
from tests.deploy.helm_render import (
    CHART,
    PROFILES,
    Rendered,
    base_values,
    helm_sdk,
    merge,
    plan_values,
    render,
)

PLANS = {
    "r1-1x8-h200": ["-m", "deepseek-r1", "--gpu", "h200", "--gpus-per-node", "8"],
    "v3-2x8-h100": ["-m", "deepseek-v3", "--gpu", "h100", "--gpus-per-node", "8", "--nodes", "2"],
    "r1-fp4-1x4-b200": ["-m", "deepseek-r1-fp4", "--gpu", "b200", "--gpus-per-node", "4"],
}


@pytest.fixture(autouse=True)
def _plans(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tests.deploy.helm_render.PROFILES", {**PROFILES, **PLANS})


def _engine_pods(out: Rendered) -> list[dict[str, Any]]:
    return [pod for owner, pod in out.pod_templates() if owner["metadata"]["name"].endswith(
        "-engine")]  # fmt: skip


def _chat_template_arg(container: dict[str, Any]) -> str:
    script: str = container["args"][0]
    words = script.split()
    return words[words.index("'--chat-template'") + 1].strip("'")


@pytest.mark.parametrize("plan", sorted(PLANS))
def test_configmap_mount_and_flag_agree(plan: str) -> None:
    values = merge(plan_values(plan), base_values())
    out = render(values)
    (config_map,) = [c for c in out.of_kind("ConfigMap") if "-engine-chat-templates-" in
                     c["metadata"]["name"]]  # fmt: skip
    name = config_map["metadata"]["name"]
    assert len(name) <= 63
    pods = _engine_pods(out)
    assert len(pods) == (2 if plan.startswith("v3-2x8") else 1)  # LWS leader + worker
    for pod in pods:
        (container,) = pod["spec"]["containers"]
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == "chat-templates"]
        assert mount == {
            "name": "chat-templates",
            "mountPath": ENGINE_CHAT_TEMPLATE_DIR,
            "readOnly": True,
        }
        (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == "chat-templates"]
        assert volume["configMap"]["name"] == name
        flag = _chat_template_arg(container)
        directory, _, template = flag.rpartition("/")
        assert directory == mount["mountPath"]
        # Byte for byte the package's template (special tokens, newlines and all).
        assert config_map["data"] == {template: read_chat_template(template)}


def test_new_template_text_renames_the_configmap() -> None:
    """The name carries the content's digest, so changed templates roll the pods."""
    values = merge(plan_values("r1-1x8-h200"), base_values())
    first = render(values)
    (template,) = values["engine"]["chatTemplates"]
    values["engine"]["chatTemplates"][template] += "{# changed #}\n"
    second = render(values)

    def name(out: Rendered) -> str:
        (volume,) = [v for v in _engine_pods(out)[0]["spec"]["volumes"]
                     if v["name"] == "chat-templates"]  # fmt: skip
        return str(volume["configMap"]["name"])

    assert name(first) != name(second)


def test_no_template_no_configmap_and_no_mount() -> None:
    out = render(merge(plan_values("dev-cpu"), base_values()))
    assert not [c for c in out.of_kind("ConfigMap") if "chat-templates" in c["metadata"]["name"]]
    for pod in _engine_pods(out):
        assert not [v for v in pod["spec"]["volumes"] if v["name"] == "chat-templates"]


def test_a_flag_without_its_template_fails_the_install() -> None:
    values = merge(plan_values("r1-1x8-h200"), base_values())
    values["engine"]["chatTemplates"] = {}
    helm = helm_sdk()
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(helm.HelmError) as failed:
        chart.render(values, name="appliance", namespace="llm", is_install=True)
    assert "engine.chatTemplates has no tool_chat_template_deepseekr1.jinja" in str(failed.value)


def test_the_schema_refuses_a_path_as_template_name() -> None:
    values = merge(plan_values("r1-1x8-h200"), base_values())
    values["engine"]["chatTemplates"] = {"../x.jinja": "{{ x }}"}
    helm = helm_sdk()
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(helm.HelmError):
        chart.validate_schema(values)
