"""The Grafana dashboard shipped with the chart only queries metrics the gateway exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from appliance.telemetry import GatewayMetrics

DASHBOARD = Path(__file__).resolve().parents[3] / "helm/appliance/files/grafana-dashboard.json"


def test_dashboard_metrics_exist() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exported = set()
    for family in GatewayMetrics().registry.collect():
        exported |= {sample.name for sample in family.samples} | {family.name}
        exported |= {f"{family.name}_total", f"{family.name}_bucket"}
    used = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            used |= set(re.findall(r"\b(appliance_[a-z_]+)\b", target["expr"]))
    assert used and used <= exported, used - exported
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
