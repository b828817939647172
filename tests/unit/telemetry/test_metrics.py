"""appliance/telemetry/metrics.py: the engine replica gauge."""

from __future__ import annotations

from appliance.telemetry import GatewayMetrics


def test_engine_up_follows_each_replicas_last_check() -> None:
    metrics = GatewayMetrics()
    metrics.engine_checked("m", "http://a:8000", True)
    metrics.engine_checked("m", "http://b:8000", True)
    metrics.engine_checked("m", "http://b:8000", False)

    def up(replica: str) -> float | None:
        return metrics.registry.get_sample_value(
            "appliance_engine_up", {"model": "m", "replica": replica}
        )

    assert (up("http://a:8000"), up("http://b:8000")) == (1.0, 0.0)
    assert b'appliance_engine_up{model="m",replica="http://b:8000"} 0.0' in metrics.render()
