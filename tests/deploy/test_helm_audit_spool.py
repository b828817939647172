"""gateway.auditSpool (docs/audit.md, "The spool"): enabled, the gateway is a StatefulSet
whose pods each mount their own claim at mountPath, the rendered appliance.yaml turns the
spool on there, the HPA scales the StatefulSet and the PDB still selects its pods; off
(the default), the gateway is the Deployment it was. Rendered by Helm's own engine."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
import yaml

from appliance.config import Settings
from tests.deploy.helm_render import CHART, Rendered, base_values, helm_sdk, merge, plan_values
from tests.deploy.helm_render import render as helm_render

KUBE_VERSION = "1.33.0"
MOUNT = "/var/lib/appliance/audit-spool"


def _values(**gateway: Any) -> dict[str, Any]:
    return merge(merge(plan_values("dev-cpu"), base_values()), {"gateway": gateway})


def _render(**gateway: Any) -> Rendered:
    return helm_render(_values(**gateway))


def _spooled(**spool: Any) -> Rendered:
    return _render(auditSpool={"enabled": True, **spool})


def _settings(rendered: Rendered) -> Settings:
    config_map = rendered.one("ConfigMap", "-config")
    return Settings(**yaml.safe_load(config_map["data"]["appliance.yaml"]))


def _gateway(pod_template: dict[str, Any]) -> dict[str, Any]:
    (container,) = [c for c in pod_template["spec"]["containers"] if c["name"] == "gateway"]
    found: dict[str, Any] = container
    return found


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


def test_off_by_default_the_gateway_stays_a_deployment() -> None:
    rendered = _render()
    deployment = rendered.one("Deployment", "-gateway")
    assert not rendered.of_kind("StatefulSet")
    assert not [s for s in rendered.of_kind("Service") if s["spec"].get("clusterIP") == "None"]
    mounts = {m["name"] for m in _gateway(deployment["spec"]["template"])["volumeMounts"]}
    assert "audit-spool" not in mounts
    assert rendered.one("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["kind"] == (
        "Deployment"
    )
    assert _settings(rendered).audit.spool.enabled is False


def test_enabled_the_gateway_is_a_statefulset_with_a_claim_per_pod() -> None:
    rendered = _spooled(size="5Gi", storageClass="local-nvme")
    assert not [d for d in rendered.of_kind("Deployment") if d["metadata"]["name"].endswith(
        "-gateway")]  # fmt: skip
    sts = rendered.one("StatefulSet", "-gateway")
    spec = sts["spec"]
    assert spec["podManagementPolicy"] == "Parallel"
    # A scaled-away pod's unsealed records stay on its claim until the ordinal returns.
    assert spec["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Retain",
        "whenScaled": "Retain",
    }
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "audit-spool"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["storageClassName"] == "local-nvme"
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"

    pod = spec["template"]
    mounts = {m["name"]: m for m in _gateway(pod)["volumeMounts"]}
    assert mounts["audit-spool"]["mountPath"] == MOUNT
    assert not mounts["audit-spool"].get("readOnly")
    # The claim template supplies the volume; a pod volume of that name would shadow it.
    assert "audit-spool" not in {v["name"] for v in pod["spec"]["volumes"]}
    assert _matches(spec["selector"], pod["metadata"]["labels"])


def test_the_headless_service_governs_the_statefulset() -> None:
    rendered = _spooled()
    sts = rendered.one("StatefulSet", "-gateway")
    headless = rendered.one("Service", sts["spec"]["serviceName"])
    assert headless["metadata"]["name"] == sts["spec"]["serviceName"]
    assert headless["spec"]["clusterIP"] == "None"
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in headless["spec"]["selector"].items())
    # Clients still use the gateway Service, unchanged.
    assert rendered.one("Service", "-gateway")["spec"].get("clusterIP") != "None"


def test_the_non_root_gateway_can_write_its_volume() -> None:
    pod = _spooled().one("StatefulSet", "-gateway")["spec"]["template"]
    security = pod["spec"]["securityContext"]
    container = _gateway(pod)["securityContext"]
    # The claim's root is given the pod's fsGroup, which is the gateway's own group.
    assert security["runAsNonRoot"] is True
    assert security["fsGroup"] == security["runAsGroup"] == container["runAsGroup"]
    assert container["runAsUser"] == 10001 and container["readOnlyRootFilesystem"] is True


def test_the_config_turns_the_spool_on_at_the_mount() -> None:
    settings = _settings(_spooled(mountPath="/spool"))
    assert settings.audit.spool.enabled is True
    assert str(settings.audit.spool.directory) == "/spool"


def test_the_chart_owns_the_directory_and_keeps_the_other_spool_settings() -> None:
    values = merge(
        _values(auditSpool={"enabled": True}),
        {"config": {"audit": {"spool": {"directory": "/elsewhere", "max_bytes": 1 << 28}}}},
    )
    spool = _settings(helm_render(values)).audit.spool
    assert str(spool.directory) == MOUNT and spool.max_bytes == 1 << 28


def test_the_jobs_do_not_mount_the_spool() -> None:
    rendered = _spooled()
    for owner, pod in rendered.pod_templates():
        if owner["kind"] in ("Job", "CronJob"):
            for container in pod["spec"]["containers"]:
                names = {m["name"] for m in container.get("volumeMounts", [])}
                assert "audit-spool" not in names, owner["metadata"]["name"]


@pytest.mark.parametrize("autoscaling", [True, False])
def test_the_hpa_scales_the_statefulset(autoscaling: bool) -> None:
    rendered = _render(auditSpool={"enabled": True}, autoscaling={"enabled": autoscaling})
    sts = rendered.one("StatefulSet", "-gateway")
    hpas = rendered.of_kind("HorizontalPodAutoscaler")
    if not autoscaling:
        assert not hpas and sts["spec"]["replicas"] == 2
        return
    (hpa,) = hpas
    assert "replicas" not in sts["spec"]  # the HPA owns the count
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "name": sts["metadata"]["name"],
    }


def test_the_pdb_selects_the_statefulset_pods() -> None:
    rendered = _spooled()
    pdb = rendered.one("PodDisruptionBudget", "-gateway")
    labels = rendered.one("StatefulSet", "-gateway")["spec"]["template"]["metadata"]["labels"]
    assert _matches(pdb["spec"]["selector"], labels)


def test_network_policy_still_selects_the_gateway_pods() -> None:
    rendered = _spooled()
    policy = rendered.one("NetworkPolicy", "-gateway")
    labels = rendered.one("StatefulSet", "-gateway")["spec"]["template"]["metadata"]["labels"]
    assert _matches(policy["spec"]["podSelector"], labels)


def test_the_render_validates_against_kubernetes_schemas() -> None:
    import kubernetes_validate

    rendered = _spooled(storageClass="local-nvme")
    assert rendered.of_kind("StatefulSet")
    for obj in rendered.objects:  # dev-cpu: no LeaderWorkerSet, no Keycloak resource
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def test_helm_lint_is_clean() -> None:
    helm = helm_sdk()
    report = helm.lint(str(CHART), _values(auditSpool={"enabled": True}), strict=True)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    problems = [m for m in problems if "icon is recommended" not in m["error"]]
    assert not problems and not report["errors"], report


@pytest.mark.parametrize(
    "spool",
    [{"mountPath": "audit-spool"}, {"size": "lots"}, {"enabled": "yes"}, {"shared": True}],
    ids=["relative-mount", "bad-size", "not-a-bool", "unknown-key"],
)
def test_the_values_schema_refuses(spool: dict[str, Any]) -> None:
    helm = helm_sdk()
    values = _values(auditSpool={"enabled": True, **spool})
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(helm.HelmError):
        chart.validate_schema(values)


def test_the_values_schema_documents_every_value() -> None:
    schema = yaml.safe_load((CHART / "values.schema.json").read_text())
    spool_schema = schema["properties"]["gateway"]["properties"]["auditSpool"]
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())["gateway"]["auditSpool"]
    jsonschema.validate(defaults, spool_schema)
    assert set(defaults) == set(spool_schema["properties"])
    assert defaults["enabled"] is False and defaults["mountPath"] == MOUNT


def test_a_spool_in_config_alone_is_refused() -> None:
    """The data directory is an emptyDir: a pod's acknowledged records would go with it."""
    helm = helm_sdk()
    values = merge(_values(), {"config": {"audit": {"spool": {"enabled": True}}}})
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(helm.HelmError) as failed:
        chart.render(values, name="appliance", namespace="llm", is_install=True)
    assert "gateway.auditSpool.enabled" in str(failed.value)
