"""The cost comparison's arithmetic: what the in-house cluster costs per month and per
million input and output tokens, against each external provider's prices. Pure: no
database, no clock, no files; the caller passes the settings, the hardware count and
the month's measured usage.

The model, stated with every figure (:attr:`TcoReport.assumptions`):

1. Monthly cost = hardware price / depreciation months + power + operations, where
   power = kW per node x nodes x PUE x 730 h (8,760 h / 12) x price per kWh, drawn
   every hour whether busy or not.
2. A month's capacity = tokens per second x utilisation x 730 h x 3,600 s, for prefill
   (input) and decode (output) each; cost per million = monthly cost / capacity x 1e6,
   each as if the cluster did only that work (the figures a per-token price list gives).
3. A measured month: the in-house cost is the cluster's whole monthly cost (it ran,
   used or not); the external cost is the audit log's prompt and completion tokens at
   the provider's prices.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from appliance.errors import ConfigurationError
from appliance.settings.egress import ProviderSettings
from appliance.settings.tco import TcoSettings

__all__ = [
    "HOURS_PER_MONTH",
    "Hardware",
    "MonthRow",
    "MonthlyCost",
    "PriceRow",
    "TcoReport",
    "Throughput",
    "Usage",
    "at_rates",
    "compare",
    "missing_settings",
    "month_seconds",
    "monthly_cost",
    "per_million",
    "total_usage",
]

HOURS_PER_MONTH = Decimal(730)  # 8,760 h / 12
_SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600
_MILLION = Decimal(1_000_000)


@dataclass(frozen=True)
class Hardware:
    """How many nodes and GPUs the cluster has, and who said so."""

    nodes: int
    gpus_per_node: int | None  # None: not stated (a price per node does not need it)
    source: str

    @property
    def gpus(self) -> int | None:
        return None if self.gpus_per_node is None else self.nodes * self.gpus_per_node


@dataclass(frozen=True)
class Throughput:
    """Whole-cluster tokens per second at full load, and where the numbers came from."""

    prefill_tokens_per_s: Decimal
    decode_tokens_per_s: Decimal
    source: str


@dataclass(frozen=True)
class MonthlyCost:
    hardware: Decimal
    power: Decimal
    operations: Decimal

    @property
    def total(self) -> Decimal:
        return self.hardware + self.power + self.operations


@dataclass(frozen=True)
class Usage:
    """A calendar month's served tokens, from the audit log's completion records."""

    month: str  # YYYY-MM
    requests: int
    input_tokens: int
    output_tokens: int
    busiest_hour: str | None = None  # ISO hour, UTC
    busiest_hour_tokens: int = 0


@dataclass(frozen=True)
class PriceRow:
    """Per million tokens: in-house against one provider (None: not computable)."""

    provider: str
    currency: str
    in_house_input: Decimal | None
    in_house_output: Decimal | None
    external_input: Decimal
    external_output: Decimal
    note: str | None = None


@dataclass(frozen=True)
class MonthRow:
    """A measured month: the cluster's cost against the same tokens at a provider."""

    provider: str
    in_house: Decimal
    external: Decimal | None  # None: another currency
    in_house_at_rates: Decimal | None  # the tokens at the per-million rates
    note: str | None = None


@dataclass(frozen=True)
class TcoReport:
    currency: str
    hardware: Hardware
    cost: MonthlyCost
    throughput: Throughput | None
    in_house_input: Decimal | None
    in_house_output: Decimal | None
    prices: tuple[PriceRow, ...]
    usage: Usage | None
    months: tuple[MonthRow, ...]
    measured_busy: Decimal | None  # share of the month the measured tokens kept it busy
    assumptions: tuple[str, ...] = field(default=())


def missing_settings(tco: TcoSettings, *, hardware_known: bool) -> list[str]:
    """The ``tco.*`` keys the monthly cost needs and the site has not stated."""
    missing = []
    if tco.hardware_price_per_node is None and tco.hardware_price_per_gpu is None:
        missing.append("tco.hardware_price_per_node (or tco.hardware_price_per_gpu)")
    for key in ("depreciation_months", "power_kw_per_node", "price_per_kwh", "pue"):
        if getattr(tco, key) is None:
            missing.append(f"tco.{key}")
    if not hardware_known:
        if tco.nodes is None:
            missing.append("tco.nodes (or --plan)")
        if tco.gpus_per_node is None and tco.hardware_price_per_gpu is not None:
            missing.append("tco.gpus_per_node (or --plan)")
    return missing


def _need(value: Decimal | int | None, key: str) -> Decimal:
    if value is None:
        raise ConfigurationError(f"{key} is not set")
    return Decimal(value)


def monthly_cost(tco: TcoSettings, hardware: Hardware) -> MonthlyCost:
    """Step 1: depreciation, power and operations for one average month."""
    if tco.hardware_price_per_gpu is not None:
        price = tco.hardware_price_per_gpu * _need(hardware.gpus, "tco.gpus_per_node")
    else:
        price = _need(tco.hardware_price_per_node, "tco.hardware_price_per_node") * hardware.nodes
    months = _need(tco.depreciation_months, "tco.depreciation_months")
    kw = _need(tco.power_kw_per_node, "tco.power_kw_per_node") * hardware.nodes
    power = kw * _need(tco.pue, "tco.pue") * HOURS_PER_MONTH
    power *= _need(tco.price_per_kwh, "tco.price_per_kwh")
    return MonthlyCost(hardware=price / months, power=power, operations=tco.operations_per_month)


def per_million(monthly: Decimal, tokens_per_s: Decimal, utilisation: Decimal) -> Decimal:
    """Step 2: the monthly cost spread over a month's tokens at that rate and load."""
    return monthly / (tokens_per_s * utilisation * _SECONDS_PER_MONTH) * _MILLION


def month_seconds(month: str) -> int:
    """Seconds in a calendar month ``YYYY-MM``."""
    year, number = (int(part) for part in month.split("-"))
    return calendar.monthrange(year, number)[1] * 86_400


def total_usage(month: str, rows: Iterable[tuple[str, int | None, int | None]]) -> Usage:
    """A month's usage from ``(ISO hour, prompt tokens, completion tokens)`` per
    completion record; a record without usage counts as a request of 0 tokens."""
    requests = input_tokens = output_tokens = 0
    by_hour: dict[str, int] = {}
    for hour, prompt, completion in rows:
        requests += 1
        input_tokens += prompt or 0
        output_tokens += completion or 0
        by_hour[hour] = by_hour.get(hour, 0) + (prompt or 0) + (completion or 0)
    busiest = max(sorted(by_hour), key=lambda h: by_hour[h]) if by_hour else None
    return Usage(
        month=month,
        requests=requests,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        busiest_hour=busiest,
        busiest_hour_tokens=by_hour.get(busiest, 0) if busiest else 0,
    )


def _external(usage: Usage, provider: ProviderSettings) -> Decimal:
    return (
        usage.input_tokens * provider.price_input_per_million
        + usage.output_tokens * provider.price_output_per_million
    ) / _MILLION


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _assumptions(
    tco: TcoSettings, hardware: Hardware, throughput: Throughput | None, usage: Usage | None
) -> list[str]:
    price = (
        f"{tco.hardware_price_per_gpu} {tco.currency} per GPU x {hardware.gpus} GPUs"
        if tco.hardware_price_per_gpu is not None
        else f"{tco.hardware_price_per_node} {tco.currency} per node x "
        f"{_count(hardware.nodes, 'node')}"
    )
    per_node = "" if hardware.gpus_per_node is None else f" x {hardware.gpus_per_node} GPUs"
    lines = [
        f"hardware: {_count(hardware.nodes, 'node')}{per_node} ({hardware.source})",
        f"depreciation: {price} over {tco.depreciation_months} months, straight line",
        f"power: {tco.power_kw_per_node} kW per node x PUE {tco.pue} x 730 h per month x "
        f"{tco.price_per_kwh} {tco.currency}/kWh, drawn busy or idle",
        f"operations: {tco.operations_per_month} {tco.currency} per month",
    ]
    if throughput is None:
        lines.append(
            "throughput: not stated (tco.prefill_tokens_per_s, tco.decode_tokens_per_s); "
            "no per-million in-house figures"
        )
    else:
        lines.append(
            f"throughput: {float(throughput.prefill_tokens_per_s):,g} input tok/s (prefill) "
            f"and {float(throughput.decode_tokens_per_s):,g} output tok/s (decode) for the "
            "whole cluster at full load, "
            f"from {throughput.source}; each per-million figure assumes the cluster does "
            "only that work"
        )
        lines.append(f"utilisation: {tco.utilisation} of that throughput does paid-for work")
    if usage is not None:
        lines.append(
            f"usage: {usage.requests} completion records of {usage.month} in the audit log; "
            "the in-house cost of a month is the cluster's whole monthly cost"
        )
    lines.append("external: the configured price per 1M input and output tokens, no discounts")
    return lines


def compare(
    tco: TcoSettings,
    hardware: Hardware,
    providers: Sequence[ProviderSettings],
    *,
    throughput: Throughput | None = None,
    usage: Usage | None = None,
) -> TcoReport:
    """Steps 1 to 3 for every configured provider."""
    missing = missing_settings(tco, hardware_known=True)
    if tco.hardware_price_per_gpu is not None and hardware.gpus_per_node is None:
        missing.append("tco.gpus_per_node")
    if throughput is not None and tco.utilisation is None:
        missing.append("tco.utilisation")
    if missing:
        raise ConfigurationError("appliance tco needs " + ", ".join(missing))
    cost = monthly_cost(tco, hardware)
    rate_in = rate_out = None
    if throughput is not None:
        load = Decimal(str(tco.utilisation))
        rate_in = per_million(cost.total, throughput.prefill_tokens_per_s, load)
        rate_out = per_million(cost.total, throughput.decode_tokens_per_s, load)
    prices, months = [], []
    for provider in providers:
        other = provider.currency != tco.currency
        note = (
            f"prices in {provider.currency}, in-house in {tco.currency}: not converted"
            if other
            else None
        )
        prices.append(PriceRow(
            provider=provider.name, currency=provider.currency,
            in_house_input=None if other else rate_in,
            in_house_output=None if other else rate_out,
            external_input=provider.price_input_per_million,
            external_output=provider.price_output_per_million, note=note,
        ))  # fmt: skip
        if usage is not None:
            months.append(MonthRow(
                provider=provider.name, in_house=cost.total,
                external=None if other else _external(usage, provider),
                in_house_at_rates=at_rates(usage, rate_in, rate_out), note=note,
            ))  # fmt: skip
    busy = None
    if usage is not None and throughput is not None:
        seconds = (
            usage.input_tokens / throughput.prefill_tokens_per_s
            + usage.output_tokens / throughput.decode_tokens_per_s
        )
        busy = seconds / month_seconds(usage.month)
    return TcoReport(
        currency=tco.currency, hardware=hardware, cost=cost, throughput=throughput,
        in_house_input=rate_in, in_house_output=rate_out, prices=tuple(prices),
        usage=usage, months=tuple(months), measured_busy=busy,
        assumptions=tuple(_assumptions(tco, hardware, throughput, usage)),
    )  # fmt: skip


def at_rates(usage: Usage, rate_in: Decimal | None, rate_out: Decimal | None) -> Decimal | None:
    """``usage``'s tokens at per-million in-house rates; None without rates."""
    if rate_in is None or rate_out is None:
        return None
    return (usage.input_tokens * rate_in + usage.output_tokens * rate_out) / _MILLION
