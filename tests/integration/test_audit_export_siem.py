"""``appliance audit export --format cef|ocsf``: the evidence bundle plus the date range's
metadata as CEF lines or OCSF events, record for record the bundle's records (index,
leaf hash), never the content (not even with --reveal), on SQLite and PostgreSQL; the
OCSF events validate against OCSF's schema; the bundle still verifies."""

from __future__ import annotations

import json
import os
import re
import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine
from typer.testing import CliRunner

from appliance.audit import bundle_verifier
from appliance.audit.access import Actor
from appliance.audit.export import SIEM_FILES, export_bundle
from appliance.audit.log import AuditLog
from appliance.audit.merkle import leaf_hash
from appliance.audit.siem import SiemOptions
from appliance.audit.wiring import open_audit_log
from appliance.cli.main import app
from appliance.config import load_settings
from appliance.db import create_db_engine, upgrade_database
from appliance.errors import InvalidRequest
from tests.support.audit import ORIGIN, T0, StepClock, build_log, content_record
from tests.support.ocsf import ocsf_problems

ACTOR = Actor(subject="cli:carol", username="carol")
CANARY = "CANARY-31f0 the patient in bed 12 is allergic to penicillin"
OPTIONS = SiemOptions(origin=ORIGIN, product_version="0.1.0")


def canary_record(i: int, **fields: Any) -> Any:
    prompt = {"messages": [{"role": "user", "content": f"{CANARY} #{i}"}]}
    return content_record(i, content=prompt, **fields)


@pytest.fixture
def log(migrated_engine: Engine) -> AuditLog:
    log = build_log(migrated_engine, clock=StepClock(T0 + timedelta(days=1)))
    log.append_batch([canary_record(i) for i in range(10)])
    log.checkpoint()
    return log


def members(bundle: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(bundle) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def bundle_records(files: dict[str, bytes]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in files["records.jsonl"].decode().splitlines()]


def leaf_of(item: dict[str, Any]) -> str:
    return leaf_hash(item["leaf"].encode("utf-8")).hex()


@pytest.mark.parametrize("fmt", ["cef", "ocsf"])
def test_export_range_as_siem_lines_beside_the_bundle(
    log: AuditLog, tmp_path: Path, fmt: str
) -> None:
    out = tmp_path / f"export-{fmt}.zip"
    result = export_bundle(
        log, out, since=T0 + timedelta(seconds=2), until=T0 + timedelta(seconds=8),
        actor=ACTOR, reveal_reason="case 7", siem=(fmt, OPTIONS),
    )  # fmt: skip
    assert result.records == 6 and result.siem_file == SIEM_FILES[fmt]
    files = members(out)
    records = bundle_records(files)
    lines = files[SIEM_FILES[fmt]].decode("utf-8").splitlines()
    assert len(lines) == len(records) == 6
    assert records[0]["content"]["messages"][0]["content"].startswith(CANARY)  # revealed...
    assert CANARY.encode() not in files[SIEM_FILES[fmt]]  # ...but never into SIEM lines
    manifest = json.loads(files["manifest.json"])
    assert manifest["siem_events"]["file"] == SIEM_FILES[fmt]
    assert manifest["siem_events"]["records"] == 6
    for line, record in zip(lines, records, strict=True):
        if fmt == "ocsf":
            event = json.loads(line)
            assert ocsf_problems(event) == [], event
            assert event["metadata"]["sequence"] == record["index"]
            assert event["metadata"]["log_name"] == ORIGIN
            assert event["unmapped"]["leaf_hash"] == leaf_of(record)
        else:
            assert line.startswith("CEF:0|sovereign-appliance|appliance|0.1.0|")
            assert re.search(r" cn1=([0-9]+) ", line).group(1) == str(record["index"])  # type: ignore[union-attr]
            assert f" cs5={leaf_of(record)} " in line
            assert f" deviceExternalId={ORIGIN} " in line
    # The archive is still the evidence bundle: it verifies with its own verifier.
    assert bundle_verifier.main([str(out), "--key", log.verifier.verifier_key()]) == 0


def test_default_export_has_no_siem_lines(log: AuditLog, tmp_path: Path) -> None:
    out = tmp_path / "bundle.zip"
    result = export_bundle(log, out, since=None, until=None, actor=ACTOR)
    assert result.siem_file is None
    files = members(out)
    assert not set(SIEM_FILES.values()) & set(files)
    assert "siem_events" not in json.loads(files["manifest.json"])
    with pytest.raises(InvalidRequest, match="bundle, cef or ocsf"):
        export_bundle(log, out, since=None, until=None, actor=ACTOR, siem=("leef", OPTIONS))


def test_cli_export_format_since_until(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("APPLIANCE_"):
            monkeypatch.delenv(name)
    config = tmp_path / "appliance.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data")}), encoding="utf-8")
    settings = load_settings(config)
    engine = create_db_engine(settings.database_url)
    upgrade_database(engine)
    open_audit_log(settings, engine).append_batch([canary_record(i) for i in range(5)])
    engine.dispose()
    runner = CliRunner()

    def export(*args: str) -> Any:
        return runner.invoke(app, ["audit", "export", "--config", str(config), *args])

    out = tmp_path / "ocsf.zip"
    since, until = (T0 + timedelta(seconds=1)).isoformat(), (T0 + timedelta(seconds=3)).isoformat()
    done = export("--out", str(out), "--format", "ocsf", "--since", since, "--until", until)
    assert done.exit_code == 0, done.output
    said = " ".join(done.output.split())  # rich wraps at the console width
    assert "2 records" in said and "metadata as ocsf in events.ocsf.jsonl" in said
    events = [json.loads(x) for x in members(out)["events.ocsf.jsonl"].decode().splitlines()]
    assert [e["metadata"]["sequence"] for e in events] == [1, 2]
    assert all(ocsf_problems(e) == [] for e in events)
    assert events[0]["metadata"]["product"]["name"] == settings.audit.forward.app_name

    bundle = tmp_path / "bundle.zip"
    assert export("--out", str(bundle)).exit_code == 0
    assert "events.cef" not in members(bundle) and "events.ocsf.jsonl" not in members(bundle)
    refused = export("--out", str(bundle), "--format", "leef")
    assert refused.exit_code == 2 and "leef" in refused.output
