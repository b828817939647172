"""appliance/tco/chart.py and inputs.py: the console chart's X, Y and Z against numbers
worked out by hand (13,000 a month; 65,700 M input and 13,140 M output tokens a month
at 50,000 / 10,000 tok/s and 50 % utilisation)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from appliance.config import ProviderSettings, TcoSettings
from appliance.errors import ConfigurationError
from appliance.tco import (
    CompletionRow,
    Hardware,
    chart_figures,
    chart_to_dict,
    configured_hardware,
    missing_inputs,
    provider_of,
    throughput_of,
)

ONE_NODE = Hardware(nodes=1, gpus_per_node=8, source="test")
M = 1_000_000
NANO = Decimal("1e-9")


def site(**overrides: Any) -> TcoSettings:
    values: dict[str, Any] = {
        "nodes": 1,
        "gpus_per_node": 8,
        "hardware_price_per_node": 360_000,
        "depreciation_months": 36,
        "power_kw_per_node": 10,
        "price_per_kwh": "0.25",
        "pue": "1.2",
        "utilisation": 0.5,
        "operations_per_month": 810,
        "prefill_tokens_per_s": 50_000,
        "decode_tokens_per_s": 10_000,
    }
    return TcoSettings(**{**values, **overrides})


def provider(name: str = "openai") -> ProviderSettings:
    return ProviderSettings.model_validate(dict(
        name=name, base_url="https://api.openai.com/v1",
        credential={"secret_file": "/run/secrets/openai"}, max_classification="internal",
        teams=["research"], models=[f"gpt-4.1@{name}"], price_input_per_million="2.00",
        price_output_per_million="8.00", monthly_budget={"*": 500},
        egress={"cidrs": ["162.159.140.0/24"]},
    ))  # fmt: skip


HOUR = "2026-12-01T10:00Z"
ROWS = [
    # In-house: a base model, and a request the egress policy routed to the fallback.
    CompletionRow(HOUR, "smollm2", 10 * M, 1 * M),
    CompletionRow(HOUR, "fallback-model", None, None),
    # External: two charged in USD, one in EUR, one whose usage (so cost) is unknown.
    CompletionRow(HOUR, "gpt-4.1@openai", 4 * M, 2 * M, Decimal("24.00"), "USD"),
    CompletionRow(HOUR, "gpt-4.1@openai", 1 * M, M // 2, Decimal("6.00"), "USD"),
    CompletionRow(HOUR, "claude@anthropic", 1 * M, 1 * M, Decimal("9.5"), "EUR"),
    CompletionRow(HOUR, "gpt-4.1@openai", None, None),
]


def figures(tco: TcoSettings | None = None, rows: list[CompletionRow] = ROWS) -> Any:
    tco = tco or site()
    return chart_figures(
        tco, ONE_NODE, [provider()], rows, month="2026-12", throughput=throughput_of(tco)
    )


@pytest.mark.parametrize(
    ("model", "expected"),
    [("gpt-4.1@openai", "openai"), ("a@b@azure", "azure"), ("smollm2", None),
     ("@openai", None), ("gpt-4.1@", None), (None, None), ("", None)],
)  # fmt: skip
def test_provider_of(model: str | None, expected: str | None) -> None:
    assert provider_of(model) == expected


def test_x_y_z_by_hand() -> None:
    chart = figures()
    assert (chart.in_house.requests, chart.in_house.input_tokens) == (2, 10 * M)
    assert (chart.external.requests, chart.external.input_tokens) == (4, 6 * M)
    assert chart.external.output_tokens == 3_500_000
    # X: 10 M input at 13,000/65,700 + 1 M output at 13,000/13,140 (= 5/65,700 each).
    x = Decimal(13_000) * 15 / 65_700
    assert chart.in_house_at_rates is not None
    assert chart.in_house_at_rates.quantize(NANO) == x.quantize(NANO)
    # Z: 6 M input + 3.5 M output at the same rates.
    z = Decimal(13_000) * Decimal("23.5") / 65_700
    assert chart.external_at_in_house_rates is not None
    assert chart.external_at_in_house_rates.quantize(NANO) == z.quantize(NANO)
    # Y: the recorded USD costs; EUR listed apart; the unknown one counted, not guessed.
    assert chart.external_spend == Decimal("30.00")
    assert [(s.currency, s.amount, s.requests) for s in chart.other_spend] == [
        ("EUR", Decimal("9.5"), 1)
    ]
    assert chart.uncosted == 1
    assert chart.providers == ("anthropic", "openai")
    assert chart.monthly_cost == Decimal(13_000)


def test_every_figure_states_its_assumptions() -> None:
    lines = figures().assumptions
    text = "\n".join(lines)
    assert "external (4), all others in-house (2;" in text
    assert "the cluster itself costs 13,000.00 USD a month" in text
    assert "1 external completion(s) carried no usage" in text
    assert "9.50 EUR of external spend (1 request(s)) is in EUR, not USD" in text
    assert any(line.startswith("utilisation: 0.5") for line in lines)  # from compare()


def test_as_json_in_cents() -> None:
    data = chart_to_dict(figures())
    assert data["configured"] is True and data["currency"] == "USD"
    assert data["in_house"]["cost"] == 2.97  # 2.968...
    assert data["external"]["in_house_cost"] == 4.65  # 4.6499...
    assert data["external"]["spend"] == 30.0
    assert data["external"]["other_currencies"] == [
        {"currency": "EUR", "spend": 9.5, "requests": 1}
    ]
    assert data["monthly_cost"] == 13_000.0


def test_no_throughput_no_x_or_z_but_y_and_why() -> None:
    tco = site(prefill_tokens_per_s=None, decode_tokens_per_s=None)
    chart = figures(tco)
    assert chart.in_house_at_rates is None and chart.external_at_in_house_rates is None
    assert chart.external_spend == Decimal("30.00")
    assert any("X and Z need the in-house per-million rates" in a for a in chart.assumptions)
    assert chart_to_dict(chart)["in_house"]["cost"] is None


def test_an_empty_month_is_zero_not_an_error() -> None:
    chart = figures(rows=[])
    assert chart.external_spend == 0 and chart.in_house_at_rates == 0
    assert chart.providers == () and chart.uncosted == 0


def test_missing_settings_are_refused_by_the_same_check_as_the_cli() -> None:
    with pytest.raises(ConfigurationError, match=r"tco\.pue"):
        figures(site(pue=None))


def test_missing_inputs_names_each_key() -> None:
    assert missing_inputs(TcoSettings(), hardware_known=False) == [
        "tco.hardware_price_per_node (or tco.hardware_price_per_gpu)",
        "tco.depreciation_months", "tco.power_kw_per_node", "tco.price_per_kwh", "tco.pue",
        "tco.nodes (or --plan)",
    ]  # fmt: skip
    assert missing_inputs(site(decode_tokens_per_s=None), hardware_known=True) == [
        "tco.decode_tokens_per_s"
    ]
    assert missing_inputs(site(utilisation=None), hardware_known=True) == ["tco.utilisation"]
    assert missing_inputs(site(), hardware_known=False) == []


def test_configured_hardware() -> None:
    assert configured_hardware(site()) == Hardware(1, 8, "appliance.yaml")
    with pytest.raises(ConfigurationError, match=r"tco\.nodes"):
        configured_hardware(site(nodes=None))
