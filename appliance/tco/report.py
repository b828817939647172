"""``appliance tco`` as text: a table (rich) and JSON (schema ``appliance.tco/v1``).
Formatting only; every figure comes from :func:`appliance.tco.costs.compare`."""

from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table

from appliance.tco.costs import TcoReport

__all__ = ["TCO_SCHEMA", "render_json", "render_table", "report_to_dict"]

TCO_SCHEMA = "appliance.tco/v1"
_CENT = Decimal("0.01")
_RATE = Decimal("0.0001")


def _round(value: Decimal | None, step: Decimal) -> float | None:
    return None if value is None else float(value.quantize(step, rounding=ROUND_HALF_UP))


def _money(value: Decimal | None, currency: str, step: Decimal = _CENT) -> str:
    if value is None:
        return "n/a"
    return f"{value.quantize(step, rounding=ROUND_HALF_UP):,} {currency}"


def report_to_dict(report: TcoReport) -> dict[str, Any]:
    """Money rounded to cents, per-million rates to 1/10,000 of the currency."""
    cost, usage = report.cost, report.usage
    data: dict[str, Any] = {
        "schema": TCO_SCHEMA,
        "currency": report.currency,
        "hardware": {
            "nodes": report.hardware.nodes,
            "gpus_per_node": report.hardware.gpus_per_node,
            "source": report.hardware.source,
        },
        "monthly_cost": {
            "hardware": _round(cost.hardware, _CENT),
            "power": _round(cost.power, _CENT),
            "operations": _round(cost.operations, _CENT),
            "total": _round(cost.total, _CENT),
        },
        "throughput": None,
        "in_house_per_million": {
            "input": _round(report.in_house_input, _RATE),
            "output": _round(report.in_house_output, _RATE),
        },
        "providers": [
            {
                "provider": row.provider,
                "currency": row.currency,
                "in_house_input_per_million": _round(row.in_house_input, _RATE),
                "in_house_output_per_million": _round(row.in_house_output, _RATE),
                "external_input_per_million": _round(row.external_input, _RATE),
                "external_output_per_million": _round(row.external_output, _RATE),
                "note": row.note,
            }
            for row in report.prices
        ],
        "usage": None,
        "assumptions": list(report.assumptions),
    }
    if report.throughput is not None:
        data["throughput"] = {
            "prefill_tokens_per_s": float(report.throughput.prefill_tokens_per_s),
            "decode_tokens_per_s": float(report.throughput.decode_tokens_per_s),
            "source": report.throughput.source,
        }
    if usage is not None:
        data["usage"] = {
            "month": usage.month,
            "requests": usage.requests,
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "busiest_hour": usage.busiest_hour,
            "busiest_hour_tokens_per_s": round(usage.busiest_hour_tokens / 3600, 2),
            "busy_share": _round(report.measured_busy, _RATE),
            "providers": [
                {
                    "provider": row.provider,
                    "in_house": _round(row.in_house, _CENT),
                    "in_house_at_rates": _round(row.in_house_at_rates, _CENT),
                    "external": _round(row.external, _CENT),
                    "note": row.note,
                }
                for row in report.months
            ],
        }
    return data


def render_json(report: TcoReport) -> str:
    return json.dumps(report_to_dict(report), indent=2) + "\n"


def render_table(report: TcoReport) -> RenderableType:
    cur, cost = report.currency, report.cost
    summary = Table(title="in-house cost per month", show_header=False, title_justify="left")
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row("hardware (depreciation)", _money(cost.hardware, cur))
    summary.add_row("power", _money(cost.power, cur))
    summary.add_row("operations", _money(cost.operations, cur))
    summary.add_row("total", _money(cost.total, cur))
    summary.add_row("per 1M input tokens", _money(report.in_house_input, cur, _RATE))
    summary.add_row("per 1M output tokens", _money(report.in_house_output, cur, _RATE))
    parts: list[RenderableType] = [summary]
    if report.prices:
        prices = Table(title="per 1M tokens: in-house vs external", title_justify="left")
        for name in ("provider", "in-house input", "external input", "in-house output",
                     "external output", "note"):  # fmt: skip
            prices.add_column(name)
        for row in report.prices:
            prices.add_row(
                escape(row.provider),
                _money(row.in_house_input, cur, _RATE),
                _money(row.external_input, row.currency, _RATE),
                _money(row.in_house_output, cur, _RATE),
                _money(row.external_output, row.currency, _RATE),
                escape(row.note or ""),
            )
        parts.append(prices)
    else:
        parts.append("no external providers configured (external_providers): nothing to compare")
    usage = report.usage
    if usage is not None:
        month = Table(
            title=f"{usage.month}, measured: {usage.requests:,} requests, "
            f"{usage.input_tokens:,} input and {usage.output_tokens:,} output tokens",
            title_justify="left",
        )
        for name in ("provider", "in-house", "in-house at the rates", "external", "note"):
            month.add_column(name)
        for measured in report.months:
            month.add_row(
                escape(measured.provider),
                _money(measured.in_house, cur),
                _money(measured.in_house_at_rates, cur),
                _money(measured.external, cur),
                escape(measured.note or ""),
            )
        parts.append(month)
        if usage.busiest_hour is not None:
            parts.append(
                f"busiest hour {usage.busiest_hour}: "
                f"{usage.busiest_hour_tokens / 3600:,.2f} input and output tokens/s served "
                "(measured; a floor on the cluster's throughput)"
            )
        if report.measured_busy is not None:
            parts.append(
                f"the measured tokens kept the cluster busy {report.measured_busy:.2%} of "
                f"{usage.month} at the stated throughput"
            )
    parts.append("[bold]assumptions:[/bold]")
    parts += [f"  - {escape(line)}" for line in report.assumptions]
    return Group(*parts)
