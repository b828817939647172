"""Optional parts of the chart (Keycloak realm import, bundled PostgreSQL, Ingress, OTel
collector, Redis) and the chart's own bookkeeping: values documented with @param, the
values schema generated from the settings schema, the realm file kept current."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from appliance.cli.main import app
from tests.deploy.helm_render import CHART, base_values, merge, plan_values, render

ROOT = CHART.parents[1]


def _values(**override: Any) -> dict[str, Any]:
    return merge(merge(plan_values("dev-cpu"), base_values()), override)


def _egress_ports(policy: dict[str, Any]) -> set[int]:
    return {p["port"] for rule in policy["spec"].get("egress", []) for p in rule["ports"]}


def test_keycloak_realm_import_assets() -> None:
    out = render(
        _values(
            keycloak={
                "enabled": True,
                "url": "https://sso.example.internal",
                "namespace": "sso",
                "realmImport": {"configMap": True, "operator": True},
            },
            gateway={"publicUrl": "https://llm.example.internal"},
        )
    )
    realm = json.loads(out.one("ConfigMap", "-realm")["data"]["appliance-realm.json"])
    text = json.dumps(realm)
    assert "https://llm.example.internal/auth/callback" in text
    assert "appliance-public-url.invalid" not in text
    assert "${APPLIANCE_OIDC_GATEWAY_CLIENT_SECRET}" in text  # Keycloak fills it at import
    realm_import = out.one("KeycloakRealmImport")
    assert realm_import["apiVersion"] == "k8s.keycloak.org/v2alpha1"
    assert realm_import["spec"]["realm"] == realm
    config = yaml.safe_load(out.one("ConfigMap", "-config")["data"]["appliance.yaml"])
    assert config["oidc"]["enabled"] is True
    assert config["oidc"]["server_url"] == "https://sso.example.internal"
    gateway_policy = out.one("NetworkPolicy", "-gateway")
    sso = [
        r
        for r in gateway_policy["spec"]["egress"]
        if r.get("to")
        == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "sso"}}}]
    ]
    assert sso and sso[0]["ports"] == [{"protocol": "TCP", "port": 8443}]


def test_realm_file_is_the_current_export() -> None:
    result = CliRunner().invoke(
        app,
        [
            "identity",
            "export-realm",
            "--realm",
            "appliance",
            "--public-url",
            "https://appliance-public-url.invalid",
        ],
    )
    assert result.exit_code == 0, result.output
    shipped = json.loads((CHART / "files" / "realm.json").read_text())
    assert shipped == json.loads(result.stdout), (
        "helm/appliance/files/realm.json is stale: appliance identity export-realm "
        "--realm appliance --public-url https://appliance-public-url.invalid "
        "--out helm/appliance/files/realm.json"
    )


def test_bundled_postgresql_for_evaluation() -> None:
    out = render(_values(postgresql={"bundled": {"enabled": True}, "external": {"host": ""}}))
    statefulset = out.one("StatefulSet", "-postgresql")
    env = {e["name"]: e for e in statefulset["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "secretKeyRef" in env["POSTGRES_PASSWORD"]["valueFrom"]
    job = out.one("Job", "-migrations")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,pre-upgrade"
    policy = out.one("NetworkPolicy", "-postgresql")
    assert policy["spec"]["egress"] == []
    assert "evaluation only" in out.notes


def test_external_postgresql_is_the_default() -> None:
    out = render(_values())
    assert not out.of_kind("StatefulSet")
    job = out.one("Job", "-migrations")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "appliance",
        "db",
        "upgrade",
    ]
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert (
        volumes["config"]["configMap"]["name"]
        == out.one("ConfigMap", "-config-hook")["metadata"]["name"]
    )
    gateway = out.one("Deployment", "-gateway")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in gateway["volumes"]}
    assert volumes["config"]["configMap"]["name"] == "appliance-config"
    (rule,) = out.one("NetworkPolicy", "-migrations")["spec"]["egress"]
    assert rule == {
        "to": [{"ipBlock": {"cidr": "10.20.0.5/32"}}],
        "ports": [{"protocol": "TCP", "port": 5432}],
    }


def test_ingress_tls_from_existing_secret_or_cert_manager() -> None:
    existing = render(
        _values(
            gateway={
                "ingress": {
                    "enabled": True,
                    "hostname": "llm.example.internal",
                    "tls": {"existingSecret": "llm-tls"},
                }
            }
        )
    )
    ingress = existing.one("Ingress")
    assert ingress["spec"]["tls"] == [{"hosts": ["llm.example.internal"], "secretName": "llm-tls"}]
    issued = render(
        _values(gateway={"ingress": {"enabled": True, "tls": {"certManagerIssuer": "internal-ca"}}})
    )
    ingress = issued.one("Ingress")
    assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "internal-ca"
    assert ingress["spec"]["tls"][0]["secretName"] == "appliance-gateway-tls"


def test_gateway_pdb_hpa_and_fixed_replicas() -> None:
    out = render(_values())
    assert out.one("PodDisruptionBudget")["spec"]["minAvailable"] == 1
    assert out.one("HorizontalPodAutoscaler")["spec"]["maxReplicas"] == 6
    assert "replicas" not in out.one("Deployment", "-gateway")["spec"]
    fixed = render(_values(gateway={"autoscaling": {"enabled": False}, "replicaCount": 3}))
    assert not fixed.of_kind("HorizontalPodAutoscaler")
    assert fixed.one("Deployment", "-gateway")["spec"]["replicas"] == 3


def test_otel_collector_and_redis_egress() -> None:
    out = render(
        _values(
            otel={"enabled": True, "exporterEndpoint": "tempo.monitoring:4317"},
            redis={"enabled": True, "cidr": "10.30.0.0/24"},
        )
    )
    assert out.one("Deployment", "-otel")
    collector = yaml.safe_load(out.one("ConfigMap", "-otel")["data"]["collector.yaml"])
    assert collector["exporters"]["otlp"]["endpoint"] == "tempo.monitoring:4317"
    otel_policy = out.one("NetworkPolicy", "-otel")
    assert otel_policy["spec"]["egress"][0]["to"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }
    assert {4317, 4318, 6379, 8000, 5432} <= _egress_ports(out.one("NetworkPolicy", "-gateway"))


def test_grafana_dashboard_configmap_is_on_by_default_and_can_be_turned_off() -> None:
    shipped = json.loads((CHART / "files" / "grafana-dashboard.json").read_text())
    out = render(_values())
    dashboard = out.one("ConfigMap", "-grafana-dashboard")
    # The label Grafana's dashboard sidecar selects on; the file itself as data.
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert "namespace" not in dashboard["metadata"]  # the release namespace
    assert json.loads(dashboard["data"]["appliance-gateway.json"]) == shipped

    moved = render(
        _values(
            grafanaDashboard={"namespace": "monitoring", "annotations": {"grafana_folder": "LLM"}}
        )
    ).one("ConfigMap", "-grafana-dashboard")
    assert moved["metadata"]["namespace"] == "monitoring"
    assert moved["metadata"]["annotations"] == {"grafana_folder": "LLM"}

    off = render(_values(grafanaDashboard={"enabled": False}))
    assert not [o for o in off.of_kind("ConfigMap") if "grafana" in o["metadata"]["name"]]


def test_names_are_truncated_to_63() -> None:
    out = render(_values(fullnameOverride="x" * 80))
    for obj in out.objects:
        assert len(obj["metadata"]["name"]) <= 63, obj["metadata"]["name"]
    names = [o["metadata"]["name"] for o in out.of_kind("Service")]
    assert len(set(names)) == len(names)


def _leaf_paths(value: Any, prefix: str = "") -> list[str]:
    if isinstance(value, dict) and value:
        return [p for k, v in value.items() for p in _leaf_paths(v, f"{prefix}{k}.")]
    return [prefix.rstrip(".")]


def test_every_value_is_documented_with_param() -> None:
    text = (CHART / "values.yaml").read_text()
    documented = set(re.findall(r"^\s*## @param (\S+)", text, flags=re.M))
    values = yaml.safe_load(text)
    missing = []
    for path in _leaf_paths(values):
        parts = path.split(".")
        if not any(".".join(parts[:n]) in documented for n in range(1, len(parts) + 1)):
            missing.append(path)
    assert not missing, missing
    assert not [d for d in documented if d.split(".")[0] not in values], "stale @param"


def test_values_schema_matches_the_settings_schema() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "helm_values_schema.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    schema = json.loads((CHART / "values.schema.json").read_text())
    engine = schema["$defs"]["settingsEngineSettings"]["properties"]
    assert "api_key" not in engine and "port" in engine


def test_planner_output_only_uses_keys_the_chart_knows() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    engine_keys = set(schema["properties"]["engine"]["properties"])
    for profile in ("deepseek-v3-2x8-h100", "dev-cpu"):
        assert set(plan_values(profile)["engine"]) <= engine_keys


def test_chart_yaml_is_pinned_and_default_images_too() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["version"]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for section in (
        values["engine"],
        values["gateway"],
        values["postgresql"]["bundled"],
        values["otel"],
    ):
        assert section["image"]["tag"] not in ("", "latest")
    assert (
        Path(CHART / "templates" / "NOTES.txt")
        .read_text()
        .startswith('{{- include "appliance.validateValues" . }}')
    )
