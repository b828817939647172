"""The compliance console's cost panel in Chromium: this month's in-house X, external
Y and Z as bars, each figure with its basis and the assumptions under the chart, from
real records in a real sealed log; a site without ``tco:`` or providers is told what
to configure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from appliance.audit.records import AuditEvent, Outcome
from appliance.audit.wiring import open_audit_log
from appliance.config import ProviderSettings, Settings, TcoSettings
from appliance.db import create_db_engine, upgrade_database
from appliance.gateway import create_app
from appliance.gateway.services import utc_now
from appliance.identity.apikeys import ApiKeyService
from appliance.keys.deployment import DeploymentSecrets
from appliance.tco import CompletionRow, chart_figures, configured_hardware, throughput_of
from tests.support.audit import content_record
from tests.support.fake_vllm import SECRET, FakeState
from tests.support.servers import ServerThread
from tests.ui.harness import DESKTOP, PEPPER, NewContext, screenshot, sign_in, ui_settings

TCO = {
    "nodes": 1, "gpus_per_node": 8, "hardware_price_per_node": 360_000,
    "depreciation_months": 36, "power_kw_per_node": 10, "price_per_kwh": "0.25",
    "pue": "1.2", "utilisation": 0.5, "operations_per_month": 810,
    "prefill_tokens_per_s": 50_000, "decode_tokens_per_s": 10_000,
}  # fmt: skip
# (model, prompt tokens, completion tokens, recorded cost in USD or None: in-house)
CALLS = [
    ("fake-model", 40_000_000, 9_000_000, None),
    ("gpt-4.1@openai", 3_000_000, 1_000_000, "14.000000"),
    ("gpt-4.1@openai", 500_000, 250_000, "3.000000"),
]


def egress(cost: str | None) -> dict[str, Any]:
    """The metadata the gateway records with an external completion (none in-house)."""
    if cost is None:
        return {}
    return {"egress": {"provider": "openai", "verdict": "allow", "cost": cost, "currency": "USD"}}


def money(value: Decimal | None) -> str:
    assert value is not None
    return f"{value.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):,} USD"


def serve(settings: Settings, tmp_path: Path, seed: list[Any]) -> tuple[Any, str]:
    database = create_db_engine(settings.database_url)
    upgrade_database(database)
    auditor = ApiKeyService(database, PEPPER).create(
        name="carla", owner="carla.compliance", roles=["appliance-auditor"], models=None,
        now=utc_now(),
    ).secret  # fmt: skip
    if seed:
        open_audit_log(settings, database).append_batch(seed)
    database.dispose()
    app = create_app(
        settings, secrets=DeploymentSecrets(engine_api_key=SECRET, api_key_pepper=PEPPER)
    )
    return app, auditor


def test_the_auditor_sees_this_months_cost_chart_with_its_assumptions(
    new_context: NewContext, fake_vllm: tuple[str, FakeState], tmp_path: Path
) -> None:
    settings = ui_settings(tmp_path, fake_vllm[0])
    secret = tmp_path / "openai-key"
    secret.write_text("sk-test\n", encoding="utf-8")
    settings.tco = TcoSettings.model_validate(TCO)
    settings.external_providers = [ProviderSettings.model_validate(dict(
        name="openai", base_url="https://api.openai.com/v1",
        credential={"secret_file": secret}, max_classification="internal",
        teams=["research"], models=["gpt-4.1@openai"], price_input_per_million="2.00",
        price_output_per_million="8.00", monthly_budget={"*": 500},
        egress={"cidrs": ["162.159.140.0/24"]},
    ))]  # fmt: skip
    start = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    at = start + timedelta(hours=2)
    seed = [
        content_record(
            i,
            event=AuditEvent.COMPLETION,
            outcome=Outcome.OK,
            recorded_at=at,
            model=model,
            prompt_tokens=prompt,
            completion_tokens=answer,
            params=egress(cost),
        )
        for i, (model, prompt, answer, cost) in enumerate(CALLS)
    ]
    # What appliance.tco computes for the same calls: the figures the page must show.
    hour = at.strftime("%Y-%m-%dT%H:00Z")
    rows = [
        CompletionRow(hour, m, p, c, Decimal(cost) if cost else None, "USD" if cost else None)
        for m, p, c, cost in CALLS
    ]
    expected = chart_figures(
        settings.tco, configured_hardware(settings.tco), settings.external_providers, rows,
        month=start.strftime("%Y-%m"), throughput=throughput_of(settings.tco),
    )  # fmt: skip
    app, auditor = serve(settings, tmp_path, seed)
    with ServerThread(app) as server:
        page = new_context(viewport=DESKTOP).new_page()
        sign_in(page, server.url, auditor, "/ui/console")
        page.wait_for_selector("#tco-body:not([hidden])")
        bars = {
            key: page.text_content(f'#tco-chart g[data-bar="{key}"]') or ""
            for key in ("in-house", "external", "external-in-house")
        }
        assert money(expected.in_house_at_rates) in bars["in-house"]
        assert money(expected.external_spend) == "17.00 USD"  # 14 + 3, as recorded
        assert money(expected.external_spend) in bars["external"]
        assert money(expected.external_at_in_house_rates) in bars["external-in-house"]
        # One scale: each bar's length is in proportion to its figure.
        widths = {
            key: float(page.get_attribute(f'#tco-chart g[data-bar="{key}"] rect', "width") or 0)
            for key in bars
        }
        values = {
            "in-house": expected.in_house_at_rates,
            "external": expected.external_spend,
            "external-in-house": expected.external_at_in_house_rates,
        }
        for key, value in values.items():
            ratio = float(value or 0) / float(expected.external_spend)
            assert abs(widths[key] / widths["external"] - ratio) < 1e-3, widths
        facts = page.text_content("#tco-figures") or ""
        assert "40,000,000 input and 9,000,000 output tokens" in facts
        assert "recorded with 2 external request(s) to openai" in facts
        assert money(expected.monthly_cost) in facts
        shown = page.locator("#tco-assumptions li").all_text_contents()
        assert shown == list(expected.assumptions)
        page.locator("#tco").scroll_into_view_if_needed()
        screenshot(page, "console-tco", tmp_path)


def test_without_tco_settings_the_panel_says_what_to_configure(
    new_context: NewContext, fake_vllm: tuple[str, FakeState], tmp_path: Path
) -> None:
    app, auditor = serve(ui_settings(tmp_path, fake_vllm[0]), tmp_path, [])
    with ServerThread(app) as server:
        page = new_context(viewport=DESKTOP).new_page()
        sign_in(page, server.url, auditor, "/ui/console")
        page.wait_for_selector("#tco-setup:not([hidden])")
        missing = page.locator("#tco-missing li").all_text_contents()
        assert "tco.pue" in missing and missing[-1].startswith("external_providers")
        assert "appliance.yaml" in (page.text_content("#tco-status") or "")
        assert page.is_hidden("#tco-body")
