"""The console's cost chart for one month: in-house X, external Y, and what the
external share would have cost in-house Z, each with the assumptions it rests on.

Every figure comes from :mod:`appliance.tco.costs`, the arithmetic ``appliance tco``
prints: the month's completion records are split into in-house and external
(``<model>@<provider>``) usage, :func:`~appliance.tco.costs.compare` gives the in-house
per-million rates, and :func:`~appliance.tco.costs.at_rates` prices both shares at them.
Y is what was actually charged: the cost the gateway recorded with each external
completion (``params["egress"]["cost"]``). Pure: the caller reads the log and the clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from appliance.settings.egress import ProviderSettings
from appliance.settings.tco import TcoSettings
from appliance.tco.costs import Hardware, Throughput, Usage, at_rates, compare, total_usage

__all__ = [
    "CHART_SCHEMA",
    "ChartFigures",
    "CompletionRow",
    "Spend",
    "chart_figures",
    "chart_to_dict",
    "provider_of",
    "unconfigured_to_dict",
]

CHART_SCHEMA = "appliance.tco.month/v1"
_CENT = Decimal("0.01")


@dataclass(frozen=True)
class CompletionRow:
    """One ``inference.completion`` record's clear metadata, as the chart needs it."""

    hour: str  # ISO hour, UTC
    model: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    cost: Decimal | None = None  # params["egress"]["cost"]: external calls only
    currency: str | None = None  # params["egress"]["currency"]


@dataclass(frozen=True)
class Spend:
    """External spend recorded in one currency."""

    currency: str
    amount: Decimal
    requests: int


@dataclass(frozen=True)
class ChartFigures:
    month: str
    currency: str  # tco.currency: X, Z, the monthly cost, and the charted Y
    monthly_cost: Decimal  # the cluster's whole cost for a month, used or not
    in_house: Usage
    external: Usage
    in_house_at_rates: Decimal | None  # X; None: no throughput stated
    external_spend: Decimal  # Y in ``currency``
    other_spend: tuple[Spend, ...]  # Y in other currencies: listed, not converted
    uncosted: int  # external completions without a recorded cost (usage unknown)
    external_at_in_house_rates: Decimal | None  # Z; None: no throughput stated
    providers: tuple[str, ...]  # providers the month's external records name
    assumptions: tuple[str, ...]


def provider_of(model: str | None) -> str | None:
    """``gpt-4.1@openai`` -> ``openai``; None for an in-house model (no ``@``: the
    settings refuse one in in-house and fallback model names)."""
    if not model:
        return None
    base, at, provider = model.rpartition("@")
    return provider if at and base and provider else None


def _tokens(rows: Iterable[CompletionRow]) -> list[tuple[str, int | None, int | None]]:
    return [(row.hour, row.prompt_tokens, row.completion_tokens) for row in rows]


def _spend(rows: Iterable[CompletionRow]) -> tuple[dict[str, Spend], int]:
    spend: dict[str, Spend] = {}
    uncosted = 0
    for row in rows:
        if row.cost is None or row.currency is None:
            uncosted += 1
            continue
        seen = spend.get(row.currency, Spend(row.currency, Decimal(0), 0))
        spend[row.currency] = Spend(row.currency, seen.amount + row.cost, seen.requests + 1)
    return spend, uncosted


def _money(value: Decimal | None, currency: str) -> str:
    if value is None:
        return "n/a"
    return f"{value.quantize(_CENT, rounding=ROUND_HALF_UP):,} {currency}"


def _chart_assumptions(figures: ChartFigures, rated: bool) -> list[str]:
    cur = figures.currency
    lines = [
        f"split: completion records of {figures.month} (UTC) for models named "
        f"<model>@<provider> are external ({figures.external.requests}), all others "
        f"in-house ({figures.in_house.requests}; the usage line above counts these)",
        f"in-house X: the in-house tokens ({figures.in_house.input_tokens:,} input, "
        f"{figures.in_house.output_tokens:,} output) at the per-million in-house rates; "
        f"the cluster itself costs {_money(figures.monthly_cost, cur)} a month, used or not",
        "external Y: the cost the gateway recorded with each external completion, at the "
        "provider's configured prices when it was made",
        f"in-house Z: the external tokens ({figures.external.input_tokens:,} input, "
        f"{figures.external.output_tokens:,} output) at the per-million in-house rates, as "
        "the provider counted them; an in-house model's tokenizer and answer length may "
        "differ",
    ]
    if not rated:
        lines.append(
            "X and Z need the in-house per-million rates: state tco.prefill_tokens_per_s, "
            "tco.decode_tokens_per_s and tco.utilisation"
        )
    if figures.uncosted:
        lines.append(
            f"{figures.uncosted} external completion(s) carried no usage, so no cost: not in Y"
        )
    for spend in figures.other_spend:
        lines.append(
            f"{_money(spend.amount, spend.currency)} of external spend "
            f"({spend.requests} request(s)) is in {spend.currency}, not {cur}: listed, not "
            "converted, not charted"
        )
    return lines


def chart_figures(
    tco: TcoSettings,
    hardware: Hardware,
    providers: Sequence[ProviderSettings],
    rows: Iterable[CompletionRow],
    *,
    month: str,
    throughput: Throughput | None,
) -> ChartFigures:
    """X, Y and Z for ``month`` from its completion records; ConfigurationError (from
    :func:`~appliance.tco.costs.compare`) when ``tco:`` lacks a figure."""
    rows = list(rows)
    outside = [row for row in rows if provider_of(row.model) is not None]
    inside = [row for row in rows if provider_of(row.model) is None]
    in_house = total_usage(month, _tokens(inside))
    external = total_usage(month, _tokens(outside))
    report = compare(tco, hardware, providers, throughput=throughput, usage=in_house)
    spend, uncosted = _spend(outside)
    own = spend.pop(tco.currency, None)
    figures = ChartFigures(
        month=month,
        currency=tco.currency,
        monthly_cost=report.cost.total,
        in_house=in_house,
        external=external,
        in_house_at_rates=at_rates(in_house, report.in_house_input, report.in_house_output),
        external_spend=own.amount if own is not None else Decimal(0),
        other_spend=tuple(spend[currency] for currency in sorted(spend)),
        uncosted=uncosted,
        external_at_in_house_rates=at_rates(
            external, report.in_house_input, report.in_house_output
        ),
        providers=tuple(sorted({provider_of(row.model) or "" for row in outside})),
        assumptions=(),
    )
    rated = report.in_house_input is not None
    lines = [*report.assumptions, *_chart_assumptions(figures, rated)]
    return replace(figures, assumptions=tuple(lines))


def _cents(value: Decimal | None) -> float | None:
    return None if value is None else float(value.quantize(_CENT, rounding=ROUND_HALF_UP))


def _usage(usage: Usage) -> dict[str, Any]:
    return {
        "requests": usage.requests,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
    }


def chart_to_dict(figures: ChartFigures) -> dict[str, Any]:
    """The console's JSON (schema ``appliance.tco.month/v1``); money rounded to cents."""
    return {
        "schema": CHART_SCHEMA,
        "configured": True,
        "month": figures.month,
        "currency": figures.currency,
        "monthly_cost": _cents(figures.monthly_cost),
        "in_house": {**_usage(figures.in_house), "cost": _cents(figures.in_house_at_rates)},
        "external": {
            **_usage(figures.external),
            "providers": list(figures.providers),
            "spend": _cents(figures.external_spend),
            "other_currencies": [
                {"currency": s.currency, "spend": _cents(s.amount), "requests": s.requests}
                for s in figures.other_spend
            ],
            "uncosted_requests": figures.uncosted,
            "in_house_cost": _cents(figures.external_at_in_house_rates),
        },
        "assumptions": list(figures.assumptions),
    }


def unconfigured_to_dict(month: str, missing: Sequence[str]) -> dict[str, Any]:
    """What the console shows instead of a chart: the settings still to state."""
    return {"schema": CHART_SCHEMA, "configured": False, "month": month, "missing": list(missing)}
