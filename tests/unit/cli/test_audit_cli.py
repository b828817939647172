"""appliance/cli/audit.py: the compliance officer's commands, end to end on SQLite."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from sqlalchemy import update
from typer.testing import CliRunner

from appliance.audit import bundle_verifier
from appliance.audit.log import AuditLog
from appliance.audit.wiring import open_audit_log
from appliance.cli.main import app
from appliance.config import load_settings
from appliance.db import audit_log, create_db_engine, upgrade_database
from tests.support.audit import content_record


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("APPLIANCE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "appliance.yaml"
    path.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data")}), encoding="utf-8")
    return path


@pytest.fixture
def log(config: Path) -> AuditLog:
    settings = load_settings(config)
    engine = create_db_engine(settings.database_url)
    upgrade_database(engine)
    log = open_audit_log(settings, engine)
    log.append_batch([content_record(i) for i in range(3)])
    log.append(content_record(3, subject="apikey:bob", team="research"))
    return log


def run(runner: CliRunner, config: Path, *args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["audit", *args, "--config", str(config)])


def test_verify_green_then_tampered(runner: CliRunner, config: Path, log: AuditLog) -> None:
    result = run(runner, config, "verify")
    assert result.exit_code == 0, result.output
    assert "OK: 4 records, 0 checkpoints" in result.output
    assert "4 newer records are not yet covered" in result.output
    assert run(runner, config, "checkpoint").output.startswith("appliance.local/audit\n4\n")
    assert "OK: 4 records, 1 checkpoints" in run(runner, config, "verify").output

    with log.store.engine.begin() as connection:
        connection.execute(update(audit_log).where(audit_log.c.idx == 2).values(username="eve"))
    result = run(runner, config, "verify")
    assert result.exit_code == 1
    # main() turns the error into one line; through the runner it is the exception.
    assert "record 2" in str(result.exception) and "was changed" in str(result.exception)


def test_verify_against_an_outside_checkpoint_and_key(
    runner: CliRunner, config: Path, log: AuditLog, tmp_path: Path
) -> None:
    note = run(runner, config, "checkpoint").output
    (tmp_path / "witness.txt").write_text(note)
    key = run(runner, config, "public-key").output.strip()
    result = run(
        runner, config, "verify", "--checkpoint", str(tmp_path / "witness.txt"), "--key", key
    )
    assert result.exit_code == 0, result.output
    assert "outside checkpoint at size 4: consistent" in result.output


def test_search_show_prove(runner: CliRunner, config: Path, log: AuditLog) -> None:
    found = run(runner, config, "search", "--team", "research", "--json")
    assert found.exit_code == 0, found.output
    (line,) = found.output.splitlines()
    record = json.loads(line)
    assert record["username"] == "bob" and "content" not in record

    shown = run(
        runner, config, "show", record["record_id"], "--reason", "case 9", "--actor", "carol"
    )
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["content"] == {
        "messages": [{"role": "user", "content": "question 3"}]
    }
    reads = run(runner, config, "search", "--event", "audit.read", "--json").output
    assert json.loads(reads)["params"] == {"record_id": record["record_id"], "reason": "case 9"}
    assert json.loads(reads)["username"] == "carol"

    assert run(runner, config, "prove", record["record_id"]).exit_code == 1  # not covered yet
    run(runner, config, "checkpoint")
    proof = json.loads(run(runner, config, "prove", record["record_id"]).output)
    # 4 records, 2 searches, 1 reading: each act on the log is a record too.
    assert proof["leaf_index"] == 3 and proof["tree_size"] == 7
    searches = run(runner, config, "search", "--event", "audit.search", "--json").output
    assert json.loads(searches.splitlines()[0])["params"] == {"limit": 100, "team": "research"}


def test_show_needs_a_reason(runner: CliRunner, config: Path, log: AuditLog) -> None:
    record_id = log.store.latest(1)[0].record_id
    assert run(runner, config, "show", record_id).exit_code != 0
    result = run(runner, config, "show", record_id, "--reason", "")
    assert result.exit_code == 1 and "reason" in str(result.exception)


def test_shred_keeps_verify_green(runner: CliRunner, config: Path, log: AuditLog) -> None:
    result = run(runner, config, "shred", "--subject", "apikey:alice", "--reason", "erasure #1")
    assert result.exit_code == 0, result.output
    assert "destroyed 1 key(s)" in result.output
    first = log.store.latest(10)[-1]
    shown = run(runner, config, "show", first.record_id, "--reason", "check erasure")
    assert json.loads(shown.output)["content_status"] == "shredded"
    run(runner, config, "checkpoint")
    assert run(runner, config, "verify").exit_code == 0


def test_export_writes_a_bundle(
    runner: CliRunner, config: Path, log: AuditLog, tmp_path: Path
) -> None:
    out = tmp_path / "bundle.zip"
    assert run(runner, config, "export", "--out", str(out), "--reveal").exit_code == 1
    result = run(runner, config, "export", "--out", str(out), "--from", "2025-03-01")
    assert result.exit_code == 0, result.output
    assert out.is_file()


def test_prove_consistency_between_two_checkpoints(
    runner: CliRunner, config: Path, log: AuditLog, tmp_path: Path
) -> None:
    assert run(runner, config, "checkpoint").exit_code == 0  # size 4
    log.append_batch([content_record(i) for i in range(4, 7)])
    assert run(runner, config, "checkpoint").output.startswith("appliance.local/audit\n7\n")

    result = run(runner, config, "prove", "--consistency", "4", "7")
    assert result.exit_code == 0, result.output
    proof = json.loads(result.output)
    assert (proof["old_size"], proof["new_size"]) == (4, 7)
    assert proof["old_checkpoint"].startswith("appliance.local/audit\n4\n")
    assert proof["new_checkpoint"].startswith("appliance.local/audit\n7\n")
    # RFC 6962 §2.1.2: the old tree is the new one's left half, so one hash, MTH(D[4:7]).
    assert len(proof["consistency_proof"]) == 1
    # What a monitor does with it, holding only the public key.
    (tmp_path / "proof.json").write_text(result.output)
    (tmp_path / "log.pub").write_text(run(runner, config, "public-key").output)
    checked = bundle_verifier.main(
        ["consistency", str(tmp_path / "proof.json"), "--key", str(tmp_path / "log.pub")]
    )
    assert checked == 0


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--consistency", "3", "2"), "larger than to"),
        (("--consistency", "0", "99"), "the log holds 4 records"),
        ((), "give a RECORD_ID or --consistency N M"),
        (("some-id", "--consistency", "0", "1"), "one of the two"),
    ],
    ids=["backwards", "past-the-end", "neither", "both"],
)
def test_prove_refuses_what_cannot_be_proved(
    runner: CliRunner, config: Path, log: AuditLog, args: tuple[str, ...], words: str
) -> None:
    result = run(runner, config, "prove", *args)
    assert result.exit_code == 1 and words in str(result.exception)


def test_prove_consistency_needs_two_integers(
    runner: CliRunner, config: Path, log: AuditLog
) -> None:
    assert run(runner, config, "prove", "--consistency", "1").exit_code == 2
    assert run(runner, config, "prove", "--consistency", "a", "2").exit_code == 2
