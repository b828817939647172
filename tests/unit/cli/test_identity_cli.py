"""``appliance identity ...`` commands that need no Keycloak."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from appliance.cli.main import app


def test_export_realm_to_stdout_and_file(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(
        app, ["identity", "export-realm", "--public-url", "https://llm.example", "--realm", "corp"]
    )
    assert result.exit_code == 0, result.output
    realm = json.loads(result.output)
    assert realm["realm"] == "corp"
    out = tmp_path / "realm.json"
    result = runner.invoke(
        app, ["identity", "export-realm", "--public-url", "https://llm.example", "--out", str(out)]
    )
    assert result.exit_code == 0 and json.loads(out.read_text())["realm"] == "appliance"


def test_export_realm_needs_a_public_url(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["identity", "export-realm"])
    assert result.exit_code != 0
