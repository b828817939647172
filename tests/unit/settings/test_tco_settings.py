"""appliance/settings/tco.py: ``tco`` from appliance.yaml and the environment, and what
loading refuses."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from appliance.config import load_settings
from appliance.errors import ConfigurationError
from appliance.settings.tco import TcoSettings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("APPLIANCE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def from_yaml(tmp_path: Path, tco: dict[str, object]) -> TcoSettings:
    path = tmp_path / "appliance.yaml"
    path.write_text(yaml.safe_dump({"tco": tco}), encoding="utf-8")
    return load_settings(path).tco


def test_nothing_is_assumed_by_default(tmp_path: Path) -> None:
    tco = load_settings().tco
    assert tco.hardware_price_per_node is None and tco.pue is None and tco.utilisation is None
    assert tco.operations_per_month == 0 and tco.currency == "USD"


def test_yaml_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPLIANCE_TCO__PUE", "1.4")
    tco = from_yaml(tmp_path, {"hardware_price_per_gpu": 30000, "pue": 1.2, "utilisation": 0.6})
    assert tco.hardware_price_per_gpu == Decimal(30000)
    assert tco.pue == Decimal("1.4") and tco.utilisation == 0.6


@pytest.mark.parametrize(
    ("tco", "message"),
    [
        ({"hardware_price_per_node": 1, "hardware_price_per_gpu": 1}, "not both"),
        ({"utilisation": 1.5}, "tco.utilisation"),
        ({"pue": 0.9}, "tco.pue"),
        ({"depreciation_months": 0}, "tco.depreciation_months"),
        ({"currency": "usd"}, "tco.currency"),
        ({"power_kw": 10}, "tco.power_kw"),  # a misspelt key
    ],
)
def test_refused(tmp_path: Path, tco: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        from_yaml(tmp_path, tco)
    assert message in str(caught.value)
