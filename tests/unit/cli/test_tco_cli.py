"""appliance/cli/tco.py: the cost comparison end to end, usage read from a real SQLite
audit log written by the real AuditLog."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from appliance.audit.records import AuditEvent, Outcome
from appliance.audit.store import SearchFilter
from appliance.audit.wiring import open_audit_log
from appliance.cli.main import app
from appliance.config import load_settings
from appliance.db import create_db_engine, upgrade_database
from tests.support.audit import content_record

TCO = {
    "nodes": 1,
    "gpus_per_node": 8,
    "hardware_price_per_node": 360000,
    "depreciation_months": 36,
    "power_kw_per_node": 10,
    "price_per_kwh": 0.25,
    "pue": 1.2,
    "utilisation": 0.5,
    "operations_per_month": 810,
    "prefill_tokens_per_s": 50000,
    "decode_tokens_per_s": 10000,
}
OPENAI = {
    "name": "openai",
    "base_url": "https://api.openai.com/v1",
    "credential": {"secret_file": "/run/secrets/openai"},
    "max_classification": "internal",
    "teams": ["research"],
    "models": ["gpt-4.1@openai"],
    "price_input_per_million": 2.0,
    "price_output_per_million": 8.0,
    "monthly_budget": {"*": 500},
    "egress": {"cidrs": ["162.159.140.0/24"]},
}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("APPLIANCE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def write_config(tmp_path: Path, **tco: Any) -> Path:
    path = tmp_path / "appliance.yaml"
    data = {
        "data_dir": str(tmp_path / "data"),
        "tco": {**TCO, **tco},
        "external_providers": [OPENAI],
    }
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def completion(index: int, at: datetime, prompt: int | None, answer: int | None) -> Any:
    return content_record(
        index, event=AuditEvent.COMPLETION, outcome=Outcome.OK, recorded_at=at,
        prompt_tokens=prompt, completion_tokens=answer,
    )  # fmt: skip


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A config and an audit log with November 2026's usage: 60M in, 15M out."""
    path = write_config(tmp_path)
    settings = load_settings(path)
    engine = create_db_engine(settings.database_url)
    upgrade_database(engine)
    log = open_audit_log(settings, engine)
    log.append_batch([
        completion(0, datetime(2026, 11, 2, 10, 5, tzinfo=UTC), 40_000_000, 5_000_000),
        completion(1, datetime(2026, 11, 2, 10, 50, tzinfo=UTC), 20_000_000, 10_000_000),
        completion(2, datetime(2026, 11, 30, 23, 59, tzinfo=UTC), None, None),  # failed
        completion(3, datetime(2026, 12, 1, 0, 0, tzinfo=UTC), 999, 999),  # December
        content_record(4, recorded_at=datetime(2026, 11, 3, tzinfo=UTC), prompt_tokens=7),
    ])  # fmt: skip
    engine.dispose()
    return path


def test_json_compares_prices_and_the_measured_month(runner: CliRunner, config: Path) -> None:
    result = runner.invoke(app, ["tco", "-c", str(config), "-f", "json", "--month", "2026-11"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["schema"] == "appliance.tco/v1"
    assert data["monthly_cost"] == {
        "hardware": 10000.0, "power": 2190.0, "operations": 810.0, "total": 13000.0
    }  # fmt: skip
    # 13,000 / (50,000 x 0.5 x 2,628,000 / 1e6) and / (10,000 x 0.5 x 2,628,000 / 1e6).
    assert data["in_house_per_million"] == {"input": 0.1979, "output": 0.9893}
    (row,) = data["providers"]
    assert (row["external_input_per_million"], row["external_output_per_million"]) == (2, 8)
    usage = data["usage"]
    assert (usage["requests"], usage["input_tokens"], usage["output_tokens"]) == (
        3, 60_000_000, 15_000_000
    )  # fmt: skip
    assert usage["busiest_hour"] == "2026-11-02T10:00Z"
    # External: 60 x 2 + 15 x 8 = 240; at the rates 60 x 0.19787 + 15 x 0.98935 = 26.71.
    assert usage["providers"] == [{
        "provider": "openai", "in_house": 13000.0, "in_house_at_rates": 26.71,
        "external": 240.0, "note": None,
    }]  # fmt: skip
    # 60e6 / 50,000 + 15e6 / 10,000 = 2,700 s of November's 2,592,000 s.
    assert usage["busy_share"] == round(2700 / 2_592_000, 4)
    assert any("PUE 1.2" in line for line in data["assumptions"])


def test_reading_usage_is_recorded(runner: CliRunner, config: Path) -> None:
    assert runner.invoke(app, ["tco", "-c", str(config), "--month", "2026-11"]).exit_code == 0
    settings = load_settings(config)
    engine = create_db_engine(settings.database_url)
    try:
        found = open_audit_log(settings, engine).store.search(
            SearchFilter(event=AuditEvent.AUDIT_SEARCH.value)
        )
    finally:
        engine.dispose()
    assert [stored.entry.record.params for stored in found] == [{"tco_month": "2026-11"}]


def test_table_states_figures_and_assumptions(runner: CliRunner, config: Path) -> None:
    result = runner.invoke(app, ["tco", "-c", str(config), "--month", "2026-11"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    for fact in ("13,000.00 USD", "0.1979 USD", "2.0000 USD", "240.00 USD", "openai",
                 "60,000,000 input", "assumptions:", "730 h per month"):  # fmt: skip
        assert fact in text, fact


def test_plan_gives_the_hardware(runner: CliRunner, tmp_path: Path) -> None:
    plan = runner.invoke(
        app, ["plan", "-m", "deepseek-r1-distill-llama-8b", "--gpu", "h100",
              "--gpus-per-node", "2", "--nodes", "1", "-f", "json"],
    )  # fmt: skip
    assert plan.exit_code == 0, plan.output
    (tmp_path / "plan.json").write_text(plan.output, encoding="utf-8")
    config = write_config(
        tmp_path, nodes=None, gpus_per_node=None, hardware_price_per_node=None,
        hardware_price_per_gpu=18000,
    )  # fmt: skip
    result = runner.invoke(
        app, ["tco", "-c", str(config), "--plan", "plan.json", "--no-usage", "-f", "json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert (data["hardware"]["nodes"], data["hardware"]["gpus_per_node"]) == (1, 2)
    assert data["hardware"]["source"].startswith("plan plan.json")
    assert data["monthly_cost"]["hardware"] == 1000.0  # 2 x 18,000 / 36
    assert data["usage"] is None


def test_missing_settings_are_named(runner: CliRunner, tmp_path: Path) -> None:
    config = write_config(tmp_path, pue=None, nodes=None, decode_tokens_per_s=None)
    result = runner.invoke(app, ["tco", "-c", str(config), "--no-usage"])
    assert result.exit_code == 1
    message = str(result.exception)
    for key in ("tco.pue", "tco.nodes (or --plan)", "tco.decode_tokens_per_s"):
        assert key in message
    assert "tco.depreciation_months" not in message


def test_no_audit_log_and_bad_month(runner: CliRunner, tmp_path: Path) -> None:
    config = write_config(tmp_path)
    result = runner.invoke(app, ["tco", "-c", str(config), "--month", "2026-11"])
    assert result.exit_code == 1 and "--no-usage" in str(result.exception)
    result = runner.invoke(app, ["tco", "-c", str(config), "--month", "November"])
    assert result.exit_code == 1 and "YYYY-MM" in str(result.exception)
