"""The console's cost chart endpoint (GET /ui/api/audit/tco) through the gateway, on
SQLite and PostgreSQL: completion records written by the real sealed AuditLog, the
figures checked against appliance.tco's own computation for the same tokens; auditors
only, the read recorded; unconfigured sites told what to configure."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from appliance.audit.records import AuditEvent, AuditRecord, Outcome
from appliance.audit.store import SearchFilter, SqlAuditStore
from appliance.audit.wiring import open_audit_log
from appliance.config import ProviderSettings, Settings, TcoSettings
from appliance.db import create_db_engine, upgrade_database
from appliance.gateway import create_app
from appliance.keys.deployment import DeploymentSecrets
from appliance.tco import at_rates, compare, configured_hardware, throughput_of, total_usage
from tests.integration.conftest import PEPPER, make_settings, new_key
from tests.support.audit import content_record
from tests.support.fake_vllm import SECRET, FakeState
from tests.support.requests import auth

SECRETS = DeploymentSecrets(engine_api_key=SECRET, api_key_pepper=PEPPER)
TCO = {
    "nodes": 2, "gpus_per_node": 8, "hardware_price_per_gpu": 30_000,
    "depreciation_months": 48, "power_kw_per_node": 9, "price_per_kwh": "0.31", "pue": "1.35",
    "utilisation": 0.4, "operations_per_month": 1_500, "prefill_tokens_per_s": 80_000,
    "decode_tokens_per_s": 12_500,
}  # fmt: skip
CENT = Decimal("0.01")


def provider(name: str, currency: str, secret: Path) -> ProviderSettings:
    return ProviderSettings.model_validate(dict(
        name=name, base_url="https://api.example.com/v1", credential={"secret_file": secret},
        max_classification="internal", teams=["research"], models=[f"gpt-4.1@{name}"],
        price_input_per_million="2.00", price_output_per_million="8.00", currency=currency,
        monthly_budget={"*": 500}, egress={"cidrs": ["162.159.140.0/24"]},
    ))  # fmt: skip


@pytest.fixture
def settings(
    tmp_path: Path, fake_vllm: tuple[str, FakeState], database_url: str
) -> Iterator[Settings]:
    settings = make_settings(tmp_path, fake_vllm[0])
    settings.database.url = database_url
    secret = tmp_path / "provider-key"
    secret.write_text("sk-test\n", encoding="utf-8")
    settings.tco = TcoSettings.model_validate(TCO)
    settings.external_providers = [
        provider("openai", "USD", secret),
        provider("mistral", "EUR", secret),
    ]
    engine = create_db_engine(database_url)
    upgrade_database(engine)
    engine.dispose()
    yield settings


def completion(
    index: int, at: datetime, model: str, tokens: tuple[int, int] | None, **egress: Any
) -> AuditRecord:
    params: dict[str, Any] = {"max_tokens": 16}
    if egress:
        params["egress"] = {"provider": model.rpartition("@")[2] or None, **egress}
    prompt, answer = tokens if tokens else (None, None)
    return content_record(
        index, event=AuditEvent.COMPLETION, outcome=Outcome.OK, recorded_at=at, model=model,
        prompt_tokens=prompt, completion_tokens=answer, params=params,
    )  # fmt: skip


def cents(value: Decimal | None) -> float | None:
    return None if value is None else float(value.quantize(CENT, rounding=ROUND_HALF_UP))


def test_the_chart_is_appliance_tco_split_in_house_and_external(settings: Settings) -> None:
    now = datetime.now(UTC)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    month = start.strftime("%Y-%m")
    at = start + timedelta(hours=3)  # this month, whatever the day of the run
    in_house = [(1_200_000, 300_000), (450_000, 99_000)]
    routed = (70_000, 5_000)  # the policy sent it to the in-house fallback model
    external = [((2_000_000, 500_000), "8.000000"), ((333_333, 77_777), "1.288882")]
    records = [
        completion(1, at, "smollm2", in_house[0]),
        completion(2, at, "smollm2:legal", in_house[1]),
        completion(3, at, "fallback-model", routed, verdict="route"),
        completion(4, at, "gpt-4.1@openai", external[0][0], verdict="allow",
                   cost=external[0][1], currency="USD"),
        completion(5, at, "gpt-4.1@openai", external[1][0], verdict="pseudonymise",
                   cost=external[1][1], currency="USD"),
        completion(6, at, "gpt-4.1@mistral", (10_000, 1_000), verdict="allow",
                   cost="0.028", currency="EUR"),
        completion(7, at, "gpt-4.1@openai", None, verdict="allow"),  # usage unknown
        # Not counted: last month's completion, and a decision record (no tokens).
        completion(8, start - timedelta(hours=1), "gpt-4.1@openai", (900_000_000, 900_000_000),
                   verdict="allow", cost="90000", currency="USD"),
        content_record(9, event=AuditEvent.REQUEST, recorded_at=at, model="gpt-4.1@openai",
                       params={"egress": {"verdict": "allow", "cost": "1", "currency": "USD"}}),
    ]  # fmt: skip
    engine = create_db_engine(settings.database_url)
    try:
        open_audit_log(settings, engine).append_batch(records)
        auditor = new_key(settings, ["appliance-auditor"])
        with TestClient(create_app(settings, secrets=SECRETS)) as client:
            response = client.get("/ui/api/audit/tco", headers=auth(auditor))
        assert response.status_code == 200, response.text
        data = response.json()

        # The same inputs through appliance.tco's own functions.
        hour = at.strftime("%Y-%m-%dT%H:00Z")
        own = [(hour, p, c) for p, c in [*in_house, routed]]
        outside: list[tuple[str, int | None, int | None]] = [
            (hour, p, c) for p, c in [e[0] for e in external] + [(10_000, 1_000)]
        ]
        outside.append((hour, None, None))
        usage_in, usage_out = total_usage(month, own), total_usage(month, outside)
        tco = settings.tco
        report = compare(
            tco, configured_hardware(tco), settings.external_providers,
            throughput=throughput_of(tco), usage=usage_in,
        )  # fmt: skip
        x = at_rates(usage_in, report.in_house_input, report.in_house_output)
        z = at_rates(usage_out, report.in_house_input, report.in_house_output)
        y = sum((Decimal(cost) for _, cost in external), Decimal(0))
        assert x is not None and z is not None and x > 0 and z > 0

        assert data["month"] == month and data["currency"] == "USD"
        assert data["monthly_cost"] == cents(report.cost.total)
        assert data["in_house"] == {
            "requests": 3,
            "input_tokens": usage_in.input_tokens,
            "output_tokens": usage_in.output_tokens,
            "cost": cents(x),
        }
        ext = data["external"]
        assert (ext["requests"], ext["input_tokens"]) == (4, usage_out.input_tokens)
        assert ext["output_tokens"] == usage_out.output_tokens
        assert ext["spend"] == cents(y) == 9.29
        assert ext["in_house_cost"] == cents(z)
        assert ext["other_currencies"] == [{"currency": "EUR", "spend": 0.03, "requests": 1}]
        assert ext["uncosted_requests"] == 1
        assert ext["providers"] == ["mistral", "openai"]
        assumptions = data["assumptions"]
        assert list(report.assumptions) == assumptions[: len(report.assumptions)]
        assert any("external (4), all others in-house (3;" in line for line in assumptions)

        # The look is recorded before the figures are read, by the auditor.
        found = SqlAuditStore(engine).search(SearchFilter(event=AuditEvent.AUDIT_SEARCH.value))
        looks = [stored.entry.record for stored in found]
        assert [(r.params, r.path) for r in looks] == [
            ({"tco_month": month}, "GET /ui/api/audit/tco")
        ]
    finally:
        engine.dispose()


def test_auditors_only(settings: Settings) -> None:
    with TestClient(create_app(settings, secrets=SECRETS)) as client:
        for roles in (["appliance-user"], ["appliance-admin"]):
            response = client.get("/ui/api/audit/tco", headers=auth(new_key(settings, roles)))
            assert response.status_code == 403, roles
            assert response.json()["error"]["type"]


@pytest.mark.parametrize(
    ("tco", "providers", "named"),
    [
        ({}, True, ["tco.pue", "tco.nodes (or --plan)"]),
        ({**TCO, "decode_tokens_per_s": None}, True, ["tco.decode_tokens_per_s"]),
        (TCO, False, ["external_providers (docs/egress.md)"]),
    ],
)  # fmt: skip
def test_unconfigured_names_what_to_configure(
    settings: Settings, tco: dict[str, Any], providers: bool, named: list[str]
) -> None:
    settings.tco = TcoSettings.model_validate(tco)
    if not providers:
        settings.external_providers = []
    auditor = new_key(settings, ["appliance-auditor"])
    with TestClient(create_app(settings, secrets=SECRETS)) as client:
        response = client.get("/ui/api/audit/tco", headers=auth(auditor))
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["configured"] is False and "in_house" not in data
    for name in named:
        assert any(line.startswith(name) for line in data["missing"]), data["missing"]
