"""appliance/telemetry/metrics.py: the SIEM forwarder's lag, read at every scrape."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from appliance.audit.forward_status import ForwardStatus
from appliance.telemetry import GatewayMetrics

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def test_lag_is_read_when_scraped() -> None:
    metrics = GatewayMetrics()
    current = [ForwardStatus("behind", 50, 12, NOW - timedelta(seconds=90))]
    metrics.watch_forwarder(lambda: current[0], now=lambda: NOW)

    def sample(name: str) -> float | None:
        return metrics.registry.get_sample_value(name)

    assert sample("appliance_audit_forward_enabled") == 1
    assert sample("appliance_audit_forward_behind_records") == 12
    assert sample("appliance_audit_forward_last_delivery_age_seconds") == 90
    assert sample("appliance_audit_forward_error") == 0
    current[0] = ForwardStatus("up_to_date", 51, 0, NOW)
    assert sample("appliance_audit_forward_behind_records") == 0  # read again, not cached
    current[0] = ForwardStatus("error", 51, 51, None, "cursor unreadable")
    assert sample("appliance_audit_forward_error") == 1
    assert math.isinf(sample("appliance_audit_forward_last_delivery_age_seconds") or 0)
    assert b"appliance_audit_forward_last_delivery_age_seconds +Inf" in metrics.render()


def test_off_exports_only_that_it_is_off() -> None:
    metrics = GatewayMetrics()
    metrics.watch_forwarder(lambda: ForwardStatus("off", 9, 0, None))
    assert metrics.registry.get_sample_value("appliance_audit_forward_enabled") == 0
    assert metrics.registry.get_sample_value("appliance_audit_forward_behind_records") is None
