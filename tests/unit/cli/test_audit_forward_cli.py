"""appliance/cli/audit_forward.py: `appliance audit forward` keeps its options and says
in one line why it cannot start (the forwarding itself: tests/integration/)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from appliance.cli.main import app
from appliance.errors import ConfigurationError


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("APPLIANCE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")


def test_options_are_kept() -> None:
    result = CliRunner().invoke(app, ["audit", "forward", "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--once", "--interval", "--from-index", "--config"):
        assert option in result.output


def test_off_until_a_siem_is_named(tmp_path: Path) -> None:
    config = tmp_path / "appliance.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data")}))
    CliRunner().invoke(app, ["db", "upgrade", "--config", str(config)])
    result = CliRunner().invoke(app, ["audit", "forward", "--once", "--config", str(config)])
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigurationError)
    assert "audit.forward.host is not set" in str(result.exception)
