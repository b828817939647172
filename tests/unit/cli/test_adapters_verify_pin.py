"""``appliance adapters verify --expect-sha256``: the deploy paths pin an approved
adapter by its manifest sha256 (the chart's init container runs this command)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from appliance.adapters import import_adapter
from appliance.cli.main import app
from tests.support.fake_adapters import DEV_BASE, write_adapter, write_base


def test_verify_against_the_approved_sha256(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [name for name in os.environ if name.startswith("APPLIANCE_")]:
        monkeypatch.delenv(name)
    config = tmp_path / "appliance.yaml"
    config.write_text(json.dumps({"data_dir": str(tmp_path / "data")}))
    store = tmp_path / "data" / "models"
    write_base(store)
    stored = import_adapter(write_adapter(tmp_path / "src"), store, "legal-v1", base=DEV_BASE,
                            teams=["legal"], trust_source=True).adapter  # fmt: skip

    def verify(expected: str) -> Result:
        return CliRunner().invoke(
            app,
            ["adapters", "verify", "legal-v1", "--base", DEV_BASE, "--expect-sha256", expected,
             "--config", str(config)],
        )  # fmt: skip

    ok = verify(stored.manifest_sha256.upper())
    assert ok.exit_code == 0, ok.output
    other = verify("0" * 64)
    assert other.exit_code == 1
    assert "is not the expected" in str(other.exception)
