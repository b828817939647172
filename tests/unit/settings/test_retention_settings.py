"""appliance/settings/retention.py: ``audit.retention`` from appliance.yaml and the
environment, the deprecated ``audit.retention_days``, and what loading refuses. (The
floor itself is checked at start: tests/unit/audit/test_retention.py.)"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from appliance.config import load_settings
from appliance.errors import ConfigurationError
from appliance.settings.audit import AuditSettings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("APPLIANCE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def from_yaml(tmp_path: Path, audit: dict[str, object]) -> AuditSettings:
    path = tmp_path / "appliance.yaml"
    path.write_text(yaml.safe_dump({"audit": audit}), encoding="utf-8")
    return load_settings(path).audit


def test_defaults_a_year_over_a_six_month_floor(tmp_path: Path) -> None:
    retention = load_settings().audit.retention
    assert (retention.default_days, retention.floor_days) == (365, 183)
    assert retention.kinds == {} and retention.override_reason is None


def test_periods_per_kind_from_yaml_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    audit = from_yaml(tmp_path, {"retention": {"kinds": {"inference.completion": 730}}})
    assert audit.retention.kinds == {"inference.completion": 730}
    monkeypatch.setenv("APPLIANCE_AUDIT__RETENTION__DEFAULT_DAYS", "500")
    monkeypatch.setenv("APPLIANCE_AUDIT__RETENTION__OVERRIDE_REASON", "Works agreement 2026-04")
    retention = load_settings().audit.retention
    assert retention.default_days == 500
    assert retention.override_reason == "Works agreement 2026-04"


def test_the_old_single_period_still_loads_as_the_default(tmp_path: Path) -> None:
    audit = from_yaml(tmp_path, {"retention_days": 730})
    assert audit.retention.default_days == 730
    # The same value twice is harmless; two different ones are a mistake.
    same = from_yaml(tmp_path, {"retention_days": 400, "retention": {"default_days": 400}})
    assert same.retention.default_days == 400
    with pytest.raises(ConfigurationError, match=r"keep only audit\.retention\.default_days"):
        from_yaml(tmp_path, {"retention_days": 730, "retention": {"default_days": 400}})


@pytest.mark.parametrize(
    ("retention", "names"),
    [
        ({"floor_days": 90}, "audit.retention.floor_days"),
        ({"default_days": 0}, "audit.retention.default_days"),
        ({"kinds": {"inference": 0}}, "audit.retention.kinds.inference"),
        ({"kinds": {"Inference Requests": 400}}, "is not an event kind"),
        ({"override_reason": "short"}, "audit.retention.override_reason"),
        ({"keep_forever": True}, "audit.retention.keep_forever"),
    ],
    ids=["floor-lowered", "zero-default", "zero-kind", "bad-kind-name", "terse-reason", "typo"],
)
def test_loading_refuses(tmp_path: Path, retention: dict[str, object], names: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(names)):
        from_yaml(tmp_path, {"retention": retention})
