"""``appliance tco``: the in-house cluster's cost against the external providers' prices,
per million input and output tokens and for a measured month (docs/tco.md)."""

from __future__ import annotations

from appliance.tco.chart import (
    CHART_SCHEMA,
    ChartFigures,
    CompletionRow,
    Spend,
    chart_figures,
    chart_to_dict,
    provider_of,
    unconfigured_to_dict,
)
from appliance.tco.costs import (
    HOURS_PER_MONTH,
    Hardware,
    MonthlyCost,
    MonthRow,
    PriceRow,
    TcoReport,
    Throughput,
    Usage,
    at_rates,
    compare,
    missing_settings,
    month_seconds,
    monthly_cost,
    per_million,
    total_usage,
)
from appliance.tco.inputs import configured_hardware, missing_inputs, throughput_of
from appliance.tco.measured import month_bounds, month_completions, month_usage
from appliance.tco.report import render_json, render_table, report_to_dict

__all__ = [
    "CHART_SCHEMA",
    "HOURS_PER_MONTH",
    "ChartFigures",
    "CompletionRow",
    "Hardware",
    "MonthRow",
    "MonthlyCost",
    "PriceRow",
    "Spend",
    "TcoReport",
    "Throughput",
    "Usage",
    "at_rates",
    "chart_figures",
    "chart_to_dict",
    "compare",
    "configured_hardware",
    "missing_inputs",
    "missing_settings",
    "month_bounds",
    "month_completions",
    "month_seconds",
    "month_usage",
    "monthly_cost",
    "per_million",
    "provider_of",
    "render_json",
    "render_table",
    "report_to_dict",
    "throughput_of",
    "total_usage",
    "unconfigured_to_dict",
]
