"""appliance/tco/costs.py: the cost arithmetic, against numbers worked out by hand."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from appliance.config import ProviderSettings, TcoSettings
from appliance.errors import ConfigurationError
from appliance.tco import (
    Hardware,
    Throughput,
    Usage,
    compare,
    missing_settings,
    month_seconds,
    monthly_cost,
    per_million,
    total_usage,
)

ONE_NODE = Hardware(nodes=1, gpus_per_node=8, source="test")


def site(**overrides: Any) -> TcoSettings:
    values: dict[str, Any] = {
        "hardware_price_per_node": 360_000,
        "depreciation_months": 36,
        "power_kw_per_node": 10,
        "price_per_kwh": "0.25",
        "pue": "1.2",
        "utilisation": 0.5,
        "operations_per_month": 810,
    }
    return TcoSettings(**{**values, **overrides})


def provider(name: str = "openai", **overrides: Any) -> ProviderSettings:
    values: dict[str, Any] = {
        "name": name,
        "base_url": "https://api.openai.com/v1",
        "credential": {"secret_file": "/run/secrets/openai"},
        "max_classification": "internal",
        "teams": ["research"],
        "models": [f"gpt-4.1@{name}"],
        "price_input_per_million": "2.00",
        "price_output_per_million": "8.00",
        "monthly_budget": {"*": 500},
        "egress": {"cidrs": ["162.159.140.0/24"]},
    }
    return ProviderSettings(**{**values, **overrides})


THROUGHPUT = Throughput(Decimal(50_000), Decimal(10_000), source="bench")


def test_monthly_cost_by_hand() -> None:
    # 360,000 / 36 = 10,000; 10 kW x 1.2 x 730 h x 0.25 = 2,190; operations 810.
    cost = monthly_cost(site(), ONE_NODE)
    assert (cost.hardware, cost.power, cost.operations) == (10_000, 2_190, 810)
    assert cost.total == 13_000


def test_price_per_gpu_counts_every_gpu() -> None:
    # 2 nodes x 8 GPUs x 30,000 / 48 = 10,000; power 2 x 5 kW x 1.5 x 730 x 0.2 = 2,190.
    tco = site(
        hardware_price_per_node=None, hardware_price_per_gpu=30_000, depreciation_months=48,
        power_kw_per_node=5, pue="1.5", price_per_kwh="0.2", operations_per_month=0,
    )  # fmt: skip
    cost = monthly_cost(tco, Hardware(nodes=2, gpus_per_node=8, source="plan"))
    assert (cost.hardware, cost.power, cost.total) == (10_000, 2_190, 12_190)


def test_per_million_by_hand() -> None:
    # 50,000 tok/s x 0.5 x 2,628,000 s = 65.7e9 tokens a month: 13,000 / 65,700 per 1M.
    rate = per_million(Decimal(13_000), Decimal(50_000), Decimal("0.5"))
    assert rate == Decimal(13_000) / Decimal(65_700)
    assert round(rate, 4) == Decimal("0.1979")
    assert round(per_million(Decimal(13_000), Decimal(10_000), Decimal("0.5")), 4) == Decimal(
        "0.9893"
    )


def test_compare_rows_per_provider() -> None:
    report = compare(
        site(), ONE_NODE, [provider(), provider("cheap", price_input_per_million="0.1")],
        throughput=THROUGHPUT,
    )  # fmt: skip
    assert [row.provider for row in report.prices] == ["openai", "cheap"]
    openai = report.prices[0]
    assert round(openai.in_house_input or 0, 4) == Decimal("0.1979")
    assert round(openai.in_house_output or 0, 4) == Decimal("0.9893")
    assert (openai.external_input, openai.external_output) == (2, 8)
    assert report.prices[1].external_input == Decimal("0.1")
    assert report.months == () and report.usage is None


def test_a_measured_month() -> None:
    # 100M input and 20M output tokens: at openai 100 x 2 + 20 x 8 = 360; in-house it is
    # the month's 13,000; at the per-1M rates 100 x 0.19787 + 20 x 0.98935 = 39.57.
    usage = Usage(month="2026-11", requests=5, input_tokens=100_000_000, output_tokens=20_000_000)
    report = compare(site(), ONE_NODE, [provider()], throughput=THROUGHPUT, usage=usage)
    (row,) = report.months
    assert row.in_house == 13_000 and row.external == 360
    assert round(row.in_house_at_rates or 0, 2) == Decimal("39.57")
    # Busy: 100e6 / 50,000 + 20e6 / 10,000 = 4,000 s of November's 2,592,000 s.
    assert report.measured_busy == Decimal(4_000) / Decimal(2_592_000)
    assert any("usage: 5 completion records of 2026-11" in line for line in report.assumptions)


def test_without_throughput_only_the_month_compares() -> None:
    usage = Usage(month="2026-11", requests=1, input_tokens=1_000_000, output_tokens=0)
    report = compare(site(utilisation=None), ONE_NODE, [provider()], usage=usage)
    assert report.in_house_input is None and report.prices[0].in_house_input is None
    assert report.months[0].external == 2 and report.months[0].in_house_at_rates is None
    assert any("throughput: not stated" in line for line in report.assumptions)


def test_another_currency_is_not_compared() -> None:
    usage = Usage(month="2026-11", requests=1, input_tokens=1, output_tokens=1)
    report = compare(
        site(), ONE_NODE, [provider(currency="EUR")], throughput=THROUGHPUT, usage=usage
    )
    assert report.prices[0].in_house_input is None
    assert report.months[0].external is None
    assert "not converted" in (report.prices[0].note or "")


def test_every_figure_carries_its_assumptions() -> None:
    text = "\n".join(compare(site(), ONE_NODE, [provider()], throughput=THROUGHPUT).assumptions)
    facts = ("1 node x 8 GPUs", "over 36 months", "PUE 1.2", "0.25 USD/kWh", "810 USD per month",
             "50,000 input tok/s", "from bench", "utilisation: 0.5")  # fmt: skip
    for fact in facts:
        assert fact in text


def test_missing_settings_are_named() -> None:
    assert missing_settings(TcoSettings(), hardware_known=False) == [
        "tco.hardware_price_per_node (or tco.hardware_price_per_gpu)",
        "tco.depreciation_months",
        "tco.power_kw_per_node",
        "tco.price_per_kwh",
        "tco.pue",
        "tco.nodes (or --plan)",
    ]
    assert missing_settings(site(), hardware_known=True) == []
    with pytest.raises(ConfigurationError, match=r"tco\.utilisation"):
        compare(site(utilisation=None), ONE_NODE, [], throughput=THROUGHPUT)
    with pytest.raises(ConfigurationError, match=r"tco\.gpus_per_node"):
        compare(
            site(hardware_price_per_node=None, hardware_price_per_gpu=1),
            Hardware(nodes=1, gpus_per_node=None, source="appliance.yaml"), [],
        )  # fmt: skip


def test_total_usage_sums_and_finds_the_busiest_hour() -> None:
    rows = [
        ("2026-11-02T10:00Z", 100, 20),
        ("2026-11-02T11:00Z", 1_000, 200),
        ("2026-11-02T10:00Z", None, None),  # a failed request: counted, no tokens
    ]
    usage = total_usage("2026-11", rows)
    assert (usage.requests, usage.input_tokens, usage.output_tokens) == (3, 1_100, 220)
    assert (usage.busiest_hour, usage.busiest_hour_tokens) == ("2026-11-02T11:00Z", 1_200)
    assert total_usage("2026-11", []).busiest_hour is None


def test_month_seconds() -> None:
    assert month_seconds("2026-02") == 28 * 86_400
    assert month_seconds("2028-02") == 29 * 86_400
