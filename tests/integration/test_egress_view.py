"""The compliance officer's egress view and export (issue #17), on SQLite and
PostgreSQL: records of every kind of external call, beside ordinary in-house ones, in
a real sealed log; the console's endpoint and `audit export --egress` show exactly the
external calls, the export verifies, and the view is recorded as a search."""

from __future__ import annotations

import json
import os
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from appliance.audit.bundle_verifier import verify_bundle
from appliance.audit.egress_report import is_external
from appliance.audit.log import AuditLog
from appliance.audit.records import AuditEvent, AuditRecord
from appliance.audit.store import SearchFilter, SqlAuditStore
from appliance.audit.wiring import open_audit_log
from appliance.cli.main import app as cli_app
from appliance.config import Settings
from appliance.db import create_db_engine
from appliance.gateway import create_app
from appliance.keys.deployment import DeploymentSecrets
from tests.integration.conftest import PEPPER, migrated_settings, new_key
from tests.support.egress_calls import KINDS, external_call, inhouse_call
from tests.support.fake_vllm import SECRET, FakeState
from tests.support.requests import auth

SECRETS = DeploymentSecrets(engine_api_key=SECRET, api_key_pepper=PEPPER)
VIEW = "/ui/api/audit/egress"


@pytest.fixture
def settings(tmp_path: Path, fake_vllm: tuple[str, FakeState], database_url: str) -> Settings:
    return migrated_settings(tmp_path, fake_vllm[0], database_url)


def seed(log: AuditLog, start: datetime) -> list[AuditRecord]:
    """Two rounds of every kind of external call (two teams, two providers) between
    in-house calls; returns every record written."""
    written: list[AuditRecord] = []
    at = start
    for round_ in range(2):
        team, provider = ("radiology", "openai") if round_ == 0 else ("finance", "mistral")
        for kind in KINDS:
            batch = inhouse_call(f"in-{round_}-{kind}", team=team, at=at)
            batch += external_call(
                kind, f"ex-{round_}-{kind}", team=team, provider=provider,
                at=at + timedelta(seconds=2), detectors={"email": 1},
            )  # fmt: skip
            log.append_batch(batch)
            written += batch
            at += timedelta(minutes=1)
    return written


def members(bundle: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(bundle) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def bundle_ids(files: dict[str, bytes]) -> list[str]:
    lines = files["records.jsonl"].decode().splitlines()
    return [json.loads(json.loads(line)["leaf"])["meta"]["record_id"] for line in lines]


def test_the_view_and_the_export_hold_exactly_the_external_calls(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_db_engine(settings.database_url)
    log = open_audit_log(settings, engine)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    written = seed(log, start)
    external = [r.record_id for r in written if is_external(r)]
    assert 0 < len(external) < len(written)  # both kinds were written
    auditor = auth(new_key(settings, ["appliance-auditor"]))
    user = auth(new_key(settings, ["appliance-user"]))
    window = {"since": (start - timedelta(minutes=1)).isoformat(), "until": "2100-01-01T00:00:00"}

    with TestClient(create_app(settings, secrets=SECRETS)) as client:
        response = client.get(VIEW, params=window, headers=auditor)
        assert response.status_code == 200, response.text
        view = response.json()
        assert [r["record_id"] for r in view["records"]] == external
        assert view["truncated"] is False
        summary = view["summary"]
        assert summary["records"] == len(external)
        lines = {(x["team"], x["provider"]): x for x in summary["lines"]}
        assert set(lines) == {("finance", "mistral"), ("radiology", "openai")}
        for line in lines.values():
            counts = [line[k] for k in ("left", "pseudonymised", "routed", "blocked")]
            assert [*counts, line["budget_refused"]] == [2, 1, 1, 1, 1]
            assert line["cost"] == {"EUR": "0.0246"}  # two calls left at 0.0123
            assert line["detectors"] == {"email": len(KINDS)}  # once per call
        # Drill-down: one line's records, each opening with the console's reveal.
        narrowed = client.get(
            VIEW, params={**window, "team": "finance", "provider": "mistral"}, headers=auditor
        ).json()
        assert {r["egress_team"] for r in narrowed["records"]} == {"finance"}
        assert narrowed["summary"]["lines"] == [lines[("finance", "mistral")]]
        sent = next(r for r in narrowed["records"] if r["event"] == "egress.request")
        shown = client.post(
            f"/audit/records/{sent['record_id']}/reveal", json={"reason": "regulator query 7"},
            headers=auditor,
        )  # fmt: skip
        assert shown.status_code == 200 and shown.json()["content"]["sent"]
        # A smaller limit keeps the newest records and says so.
        few = client.get(VIEW, params={**window, "limit": 2}, headers=auditor).json()
        assert [r["record_id"] for r in few["records"]] == external[-2:] and few["truncated"]
        # Outside the range: nothing.
        past = client.get(VIEW, params={"until": start.isoformat()}, headers=auditor).json()
        assert past["records"] == [] and past["summary"]["lines"] == []
        # Compliance officers only, refused the OpenAI way.
        refused = client.get(VIEW, headers=user)
        assert refused.status_code == 403 and refused.json()["error"]["type"] == "permission_error"

    store = SqlAuditStore(engine)
    searches = store.search(SearchFilter(event=AuditEvent.AUDIT_SEARCH.value))
    views = [s.entry.record for s in searches if s.entry.record.path == "GET /ui/api/audit/egress"]
    assert len(views) == 4  # each of the auditor's four views; the refused one is a denial
    assert views[1].params is not None and views[1].params["team"] == "finance"

    # The export for the regulator: the same records, in a bundle that verifies.
    for name in list(os.environ):
        if name.startswith("APPLIANCE_"):
            monkeypatch.delenv(name)
    config = tmp_path / "appliance.yaml"
    config.write_text(
        yaml.safe_dump(
            {"data_dir": str(settings.data_dir), "database": {"url": settings.database_url}}
        ),
        encoding="utf-8",
    )
    out = tmp_path / "egress.zip"
    done = CliRunner().invoke(
        cli_app,
        ["audit", "export", "--config", str(config), "--out", str(out), "--egress",
         "--from", window["since"]],
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "external calls only" in " ".join(done.output.split())
    files = members(out)
    assert bundle_ids(files) == external
    exported: dict[str, Any] = json.loads(files["egress_summary.json"])
    assert exported["lines"] == summary["lines"] and exported["totals"] == summary["totals"]
    manifest = json.loads(files["manifest.json"])
    assert manifest["records"] == len(external)
    assert manifest["egress_summary"] == "egress_summary.json"
    assert verify_bundle(out, log.verifier.verifier_key())["records"] == len(external)
    # The whole export still holds the in-house records too.
    whole = tmp_path / "whole.zip"
    done = CliRunner().invoke(
        cli_app, ["audit", "export", "--config", str(config), "--out", str(whole)]
    )
    assert done.exit_code == 0, done.output
    assert set(external) < set(bundle_ids(members(whole)))
    assert "egress_summary.json" not in members(whole)
    engine.dispose()
