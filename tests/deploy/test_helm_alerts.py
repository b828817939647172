"""The chart's Prometheus alerts (helm/appliance/files/prometheus-rules.yaml): off by
default (they need the operator's CRDs), rendered as a PrometheusRule when enabled,
and naming only metrics the gateway exports."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import yaml

from appliance.audit.forward_status import ForwardStatus
from appliance.telemetry import GatewayMetrics
from tests.deploy.helm_render import CHART, base_values, merge, plan_values, render

RULES = yaml.safe_load((CHART / "files" / "prometheus-rules.yaml").read_text())


def _values(**override: Any) -> dict[str, Any]:
    return merge(merge(plan_values("dev-cpu"), base_values()), override)


def test_prometheus_rule_is_off_by_default_and_ships_the_file_when_on() -> None:
    assert not render(_values()).of_kind("PrometheusRule")
    out = render(
        _values(
            prometheusRule={
                "enabled": True, "namespace": "monitoring", "labels": {"release": "kps"},
            }
        )
    )  # fmt: skip
    rule = out.one("PrometheusRule", "-alerts")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == "monitoring"
    assert rule["metadata"]["labels"]["release"] == "kps"
    assert rule["spec"] == RULES


def test_alerts_name_metrics_the_gateway_exports() -> None:
    metrics = GatewayMetrics()
    metrics.watch_forwarder(lambda: ForwardStatus("behind", 3, 3, datetime.now(UTC)))
    exported = {sample.name for family in metrics.registry.collect() for sample in family.samples}
    alerts = {r["alert"]: r for group in RULES["groups"] for r in group["rules"]}
    assert {"ApplianceAuditForwarderBehind", "ApplianceAuditForwarderCursorError"} <= set(alerts)
    for rule in alerts.values():
        named = set(re.findall(r"\bappliance_[a-z_]+", rule["expr"]))
        assert named and named <= exported, named - exported
        assert rule["labels"]["severity"] and rule["annotations"]["summary"]
