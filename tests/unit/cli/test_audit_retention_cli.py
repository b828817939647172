"""appliance/cli/audit_retention.py (`appliance audit retention plan|apply`) and the
retention line of `appliance doctor`, end to end on SQLite through the real CLI."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from appliance.audit.access import Actor, reveal
from appliance.audit.log import AuditLog
from appliance.audit.records import AuditEvent
from appliance.audit.wiring import open_audit_log
from appliance.cli.main import app
from appliance.config import load_settings
from appliance.db import create_db_engine, upgrade_database
from appliance.errors import ConfigurationError
from tests.support.audit import content_record

AUDITOR = Actor(subject="cli:carol", username="carol")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("APPLIANCE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def write_config(tmp_path: Path, retention: dict[str, Any]) -> Path:
    path = tmp_path / "appliance.yaml"
    path.write_text(yaml.safe_dump({
        "data_dir": str(tmp_path / "data"),
        "engine": {"enabled": False},
        "audit": {"retention": retention},
    }), encoding="utf-8")  # fmt: skip
    return path


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path, {"kinds": {"inference.request": 200}})


@pytest.fixture
def log(config: Path) -> AuditLog:
    """A request and a completion from 300 days ago, and the same from yesterday."""
    settings = load_settings(config)
    engine = create_db_engine(settings.database_url)
    upgrade_database(engine)
    log = open_audit_log(settings, engine)
    now = datetime.now(UTC)
    log.append_batch([
        content_record(1, event=AuditEvent.REQUEST, recorded_at=now - timedelta(days=300)),
        content_record(2, event=AuditEvent.COMPLETION, recorded_at=now - timedelta(days=300)),
        content_record(3, event=AuditEvent.REQUEST, recorded_at=now - timedelta(days=1)),
        content_record(4, event=AuditEvent.COMPLETION, recorded_at=now - timedelta(days=1)),
    ])  # fmt: skip
    return log


def run(runner: CliRunner, config: Path, *args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [*args, "--config", str(config)])


def test_plan_shows_each_kind_then_apply_drops_only_what_is_due(
    config: Path, log: AuditLog
) -> None:
    runner = CliRunner()
    result = run(runner, config, "audit", "retention", "plan", "--json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    kinds = {kind["event"]: kind for kind in plan["kinds"]}
    assert (plan["default_days"], plan["floor_days"], plan["override_reason"]) == (365, 183, None)
    request, completion = kinds["inference.request"], kinds["inference.completion"]
    assert (request["days"], request["held"], request["due_now"]) == (200, 2, 1)
    assert (completion["days"], completion["rule"], completion["due_now"]) == (365, "default", 0)
    # The old completion falls due 365 days after its day: 65 days from now.
    expected = (datetime.now(UTC) - timedelta(days=300)).date() + timedelta(days=365)
    assert completion["next_due"] == expected.isoformat()

    table = run(runner, config, "audit", "retention", "plan")
    assert table.exit_code == 0, table.output
    assert "inference.request" in table.output and "default 365 d, floor 183 d" in table.output

    applied = run(runner, config, "audit", "retention", "apply", "--actor", "carol")
    assert applied.exit_code == 0, applied.output
    assert "inference.request: dropped content of 1 record(s) older than 200 days" in (
        applied.output
    )
    found = {
        (r.event, r.request_id): reveal(log, r.record_id, actor=AUDITOR, reason="check").status
        for r in log.store.latest(100)
        if r.event in (AuditEvent.REQUEST, AuditEvent.COMPLETION)
    }
    assert found == {
        (AuditEvent.REQUEST, "req-1"): "dropped",
        (AuditEvent.COMPLETION, "req-2"): "present",
        (AuditEvent.REQUEST, "req-3"): "present",
        (AuditEvent.COMPLETION, "req-4"): "present",
    }
    assert run(runner, config, "audit", "checkpoint").exit_code == 0
    verified = run(runner, config, "audit", "verify")
    assert verified.exit_code == 0, verified.output
    assert "1 contents dropped by retention" in verified.output
    # The look and the act are both in the log.
    events = [r.event for r in log.store.latest(100)]
    assert AuditEvent.AUDIT_RETENTION in events and AuditEvent.AUDIT_SEARCH in events


def test_apply_refuses_a_period_below_the_floor(config: Path, log: AuditLog) -> None:
    result = run(CliRunner(), config, "audit", "retention", "apply", "--days", "30")
    assert isinstance(result.exception, ConfigurationError)
    assert "default_days = 30 days is below the floor of 183 days" in str(result.exception)


def test_doctor_fails_on_a_period_below_the_floor_and_warns_on_an_override(
    tmp_path: Path,
) -> None:
    runner = CliRunner()
    short = write_config(tmp_path, {"kinds": {"inference": 30}})
    result = run(runner, short, "doctor")
    assert result.exit_code == 1
    said = " ".join(result.output.split())  # rich wraps lines at the terminal width
    assert "FAIL audit retention: audit.retention.kinds.inference = 30 days is below" in said
    overridden = write_config(
        tmp_path, {"kinds": {"inference": 30}, "override_reason": "Works council agreement 2026"}
    )
    result = run(runner, overridden, "doctor")
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "warn audit retention:" in said and "overridden: Works council agreement 2026" in said


def test_up_refuses_before_it_migrates_or_starts_an_engine(tmp_path: Path) -> None:
    short = write_config(tmp_path, {"default_days": 90})
    result = run(CliRunner(), short, "up")
    assert isinstance(result.exception, ConfigurationError)
    assert "default_days = 90 days is below the floor of 183 days" in str(result.exception)
    assert not (tmp_path / "data").exists()  # nothing was created: no database, no keys
