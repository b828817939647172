"""``appliance tco``: the in-house cluster's cost against the external providers' prices,
per million input and output tokens and for a measured month (docs/tco.md)."""

from __future__ import annotations

from appliance.tco.costs import (
    HOURS_PER_MONTH,
    Hardware,
    MonthlyCost,
    MonthRow,
    PriceRow,
    TcoReport,
    Throughput,
    Usage,
    compare,
    missing_settings,
    month_seconds,
    monthly_cost,
    per_million,
    total_usage,
)
from appliance.tco.measured import month_bounds, month_usage
from appliance.tco.report import render_json, render_table, report_to_dict

__all__ = [
    "HOURS_PER_MONTH",
    "Hardware",
    "MonthRow",
    "MonthlyCost",
    "PriceRow",
    "TcoReport",
    "Throughput",
    "Usage",
    "compare",
    "missing_settings",
    "month_bounds",
    "month_seconds",
    "month_usage",
    "monthly_cost",
    "per_million",
    "render_json",
    "render_table",
    "report_to_dict",
    "total_usage",
]
