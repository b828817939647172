"""The appliance chart rendered by Helm's own engine from real planner output, for the
four profiles of issue 7, then checked: Kubernetes schemas, lint, and policies (no
egress, no root, resources everywhere, offline engines, secrets only by reference)."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from appliance.config import Settings
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

KUBE_VERSION = "1.33.0"
LWS_SCHEMA = Path(__file__).parent / "schemas" / "leaderworkerset-v1.json"
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}
SECRET_NAME = re.compile(r"(KEY|SECRET|PASSWORD|TOKEN|PEPPER|DATABASE__URL)$")


@cache
def _rendered(profile: str) -> Rendered:
    return render(merge(plan_values(profile), base_values()))


@pytest.fixture(params=sorted(PROFILES))
def rendered(request: pytest.FixtureRequest) -> Rendered:
    return _rendered(request.param)


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in container.get("env", [])}


def _engine_script(pod: dict[str, Any]) -> str:
    (container,) = pod["spec"]["containers"]
    assert container["command"] == ["/bin/sh", "-ec"]
    script: str = container["args"][0]
    return script


def _selects(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    wanted = policy["spec"]["podSelector"].get("matchLabels", {})
    return all(labels.get(k) == v for k, v in wanted.items())


# --- Kubernetes schemas and lint -------------------------------------------------------


def test_every_object_validates_against_kubernetes_schemas(rendered: Rendered) -> None:
    import kubernetes_validate

    lws_schema = json.loads(LWS_SCHEMA.read_text())
    for obj in rendered.objects:
        if obj["kind"] == "LeaderWorkerSet":
            jsonschema.validate(obj, lws_schema)
            lwt = obj["spec"]["leaderWorkerTemplate"]
            for template in (lwt["leaderTemplate"], lwt["workerTemplate"]):
                pod_template = {
                    "apiVersion": "v1",
                    "kind": "PodTemplate",
                    "metadata": {"name": "t"},
                    "template": template,
                }
                kubernetes_validate.validate(pod_template, KUBE_VERSION, strict=True)
        elif obj["apiVersion"].startswith("k8s.keycloak.org/"):
            assert obj["spec"]["realm"]["realm"]
        else:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_helm_lint_is_clean(profile: str) -> None:
    helm = helm_sdk()
    report = helm.lint(str(CHART), merge(plan_values(profile), base_values()), strict=True)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    problems = [m for m in problems if "icon is recommended" not in m["error"]]
    assert not problems and not report["errors"], report


# --- policies over every profile -------------------------------------------------------


def test_every_pod_is_under_default_deny_egress(rendered: Rendered) -> None:
    policies = rendered.of_kind("NetworkPolicy")
    deny = [p for p in policies if p["metadata"]["name"].endswith("-default-deny")]
    assert len(deny) == 1
    assert set(deny[0]["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert "egress" not in deny[0]["spec"] and "ingress" not in deny[0]["spec"]
    for owner, pod in rendered.pod_templates():
        labels = pod["metadata"]["labels"]
        assert _selects(deny[0], labels), owner["metadata"]["name"]


def test_no_policy_allows_egress_to_everywhere(rendered: Rendered) -> None:
    for policy in rendered.of_kind("NetworkPolicy"):
        for rule in policy["spec"].get("egress", []):
            assert rule.get("ports"), f"{policy['metadata']['name']}: egress on every port"
            for peer in rule.get("to", []):
                assert peer.get("ipBlock", {}).get("cidr") != "0.0.0.0/0"


def test_no_container_without_resources(rendered: Rendered) -> None:
    for owner, pod in rendered.pod_templates():
        for container in _containers(pod):
            resources = container.get("resources", {})
            where = f"{owner['metadata']['name']}/{container['name']}"
            assert {"cpu", "memory"} <= set(resources.get("requests", {})), where
            assert "memory" in resources.get("limits", {}), where


def test_nothing_runs_as_root(rendered: Rendered) -> None:
    for owner, pod in rendered.pod_templates():
        pod_ctx = pod["spec"]["securityContext"]
        assert pod_ctx["runAsNonRoot"] is True and pod_ctx["runAsUser"] > 0
        assert pod_ctx["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["spec"]["automountServiceAccountToken"] is False
        assert not pod["spec"].get("hostNetwork") and not pod["spec"].get("hostIPC")
        for container in _containers(pod):
            ctx = container["securityContext"]
            where = f"{owner['metadata']['name']}/{container['name']}"
            assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] > 0, where
            assert ctx["allowPrivilegeEscalation"] is False, where
            assert ctx["privileged"] is False, where
            assert ctx["capabilities"]["drop"] == ["ALL"], where
            assert ctx["readOnlyRootFilesystem"] is True, where
            assert ctx["seccompProfile"]["type"] == "RuntimeDefault", where


def test_images_are_pinned(rendered: Rendered) -> None:
    for _, pod in rendered.pod_templates():
        for container in _containers(pod):
            image = container["image"]
            assert "@sha256:" in image or re.search(r":[\w][\w.-]*$", image), image
            assert not image.endswith(":latest"), image


def test_every_engine_container_is_offline(rendered: Rendered) -> None:
    engines = [
        pod
        for _, pod in rendered.pod_templates()
        if pod["metadata"]["labels"]["app.kubernetes.io/component"] == "engine"
    ]
    assert engines
    for pod in engines:
        for container in _containers(pod):
            env = _env(container)
            for name, value in OFFLINE_ENV.items():
                assert env[name]["value"] == value, name


def test_secrets_only_by_reference(rendered: Rendered) -> None:
    for owner, pod in rendered.pod_templates():
        for container in _containers(pod):
            for name, entry in _env(container).items():
                if SECRET_NAME.search(name):
                    where = f"{owner['metadata']['name']}/{container['name']}: {name}"
                    assert "value" not in entry, where
                    assert entry["valueFrom"]["secretKeyRef"]["name"] == "appliance-secrets"
    assert not rendered.of_kind("Secret")
    for config_map in rendered.of_kind("ConfigMap"):
        text = yaml.safe_dump(config_map["data"])
        assert not re.search(r"(pepper|password|api_key|client_secret):", text), text
        assert "postgresql+psycopg://" not in text


def test_no_download_init_containers(rendered: Rendered) -> None:
    for _, pod in rendered.pod_templates():
        assert not pod["spec"].get("initContainers")


def test_gateway_settings_load_with_the_appliance_schema(rendered: Rendered) -> None:
    config_map = rendered.one("ConfigMap", "-config")
    data = yaml.safe_load(config_map["data"]["appliance.yaml"])
    settings = Settings(**data)
    assert settings.engine.enabled is False
    (upstream,) = settings.effective_upstreams()
    assert upstream.url == "http://appliance-engine:8000"
    assert rendered.one("ConfigMap", "-config-hook")["data"] == config_map["data"]


def test_notes_validate_values() -> None:
    values = merge(plan_values("dev-cpu"), base_values())
    values["secrets"]["existingSecret"] = ""
    helm = helm_sdk()
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(helm.HelmError) as failed:
        chart.render(values, name="appliance", namespace="llm", is_install=True)
    assert "secrets.existingSecret" in str(failed.value)


def test_secrets_in_config_are_refused_by_the_schema() -> None:
    helm = helm_sdk()
    with helm.Chart.load(str(CHART)) as chart:
        for secret in (
            {"auth": {"api_key_pepper": "x"}},
            {"database": {"url": "postgresql://a:b@c/d"}},
            {"engine": {"api_key": "x"}},
        ):
            values = merge(base_values(), {"config": secret})
            with pytest.raises(helm.HelmError):
                chart.validate_schema(values)
        with pytest.raises(helm.HelmError):  # unknown settings key, as appliance.yaml would
            chart.validate_schema(merge(base_values(), {"config": {"gatway": {}}}))
