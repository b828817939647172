"""``appliance identity check`` against the real test realm."""

from __future__ import annotations

import yaml
from typer.testing import CliRunner

from appliance.cli.main import app


def test_check_reports_issuer_and_keys(tmp_path, oidc_realm) -> None:
    config = tmp_path / "appliance.yaml"
    oidc = {"enabled": True, "server_url": oidc_realm.server_url, "realm": oidc_realm.realm}
    config.write_text(yaml.safe_dump({"oidc": oidc}))
    result = CliRunner().invoke(app, ["identity", "check", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert f"issuer: {oidc_realm.issuer}" in result.output and "signing keys: 1" in result.output

    config.write_text(
        yaml.safe_dump({"oidc": {**oidc, "issuer": "https://wrong.example/realms/x"}})
    )
    result = CliRunner().invoke(app, ["identity", "check", "--config", str(config)])
    assert result.exit_code != 0
