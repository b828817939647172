"""A witness run as its own process (`appliance witness serve`) cosigns the appliance's
checkpoints (`appliance witness submit`), and `appliance audit verify` catches a log
rolled back together with its checkpoints, naming the witness, with no checkpoint kept
by hand."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import delete
from typer.testing import CliRunner

from appliance.audit.log import AuditLog
from appliance.audit.wiring import audit_verifier, open_audit_log
from appliance.cli.main import app
from appliance.config import load_settings
from appliance.db import (
    audit_checkpoints,
    audit_contents,
    audit_log,
    create_db_engine,
    upgrade_database,
)
from tests.support.audit import content_record
from tests.support.servers import free_port

WITNESS = "witness.test/w1"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("APPLIANCE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def _appliance_yaml(tmp_path: Path, witnesses: list[dict[str, str]]) -> Path:
    path = tmp_path / "appliance.yaml"
    config = {"data_dir": str(tmp_path / "data"), "audit": {"witnesses": witnesses}}
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.fixture
def log(tmp_path: Path) -> AuditLog:
    settings = load_settings(_appliance_yaml(tmp_path, []))
    engine = create_db_engine(settings.database_url)
    upgrade_database(engine)
    opened = open_audit_log(settings, engine)
    opened.append_batch([content_record(i) for i in range(4)])
    opened.checkpoint()
    return opened


@pytest.fixture
def witness(tmp_path: Path, log: AuditLog) -> Iterator[tuple[str, str]]:
    """(url, verifier key) of a witness process trusting this appliance's log key."""
    runner = CliRunner()
    key_file = tmp_path / "witness" / "key"
    made = runner.invoke(app, ["witness", "init", "--name", WITNESS, "--key-file", str(key_file)])
    assert made.exit_code == 0, made.output
    verifier_key = made.output.strip()
    log_key = audit_verifier(load_settings(tmp_path / "appliance.yaml")).verifier_key()
    port = free_port()
    config = tmp_path / "witness" / "witness.yaml"
    config.write_text(yaml.safe_dump({
        "name": WITNESS, "key_file": str(key_file), "port": port,
        "state_file": str(tmp_path / "witness" / "state.json"),
        "logs": [{"verifier_key": log_key}],
    }), encoding="utf-8")  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", "witness", "serve", "--config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/key").text.strip() == verifier_key:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "the witness did not start"
            time.sleep(0.2)
        yield url, verifier_key
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_witness_cosigns_and_verify_catches_a_rollback(
    tmp_path: Path, log: AuditLog, witness: tuple[str, str]
) -> None:
    url, verifier_key = witness
    config = _appliance_yaml(tmp_path, [{"verifier_key": verifier_key, "url": url}])
    runner = CliRunner()

    def cli(*args: str):  # type: ignore[no-untyped-def]
        return runner.invoke(app, [*args, "--config", str(config)])

    submitted = cli("witness", "submit")
    assert submitted.exit_code == 0, submitted.output
    assert f"{WITNESS}: cosigned the checkpoint at size 4" in submitted.output
    (line,) = log.store.cosignatures(4)  # kept beside the checkpoint it cosigns
    assert line.startswith(f"\u2014 {WITNESS} ")

    # The log grows; the witness is asked again (it answers 409 with its size first).
    log.append_batch([content_record(i) for i in range(4, 8)])
    log.checkpoint()
    assert "at size 8" in cli("witness", "submit").output
    verified = cli("audit", "verify")
    assert verified.exit_code == 0, verified.output
    assert f"witness {WITNESS}: last cosigned size 8" in verified.output

    # Rows and checkpoints rolled back together: the stored log is self-consistent.
    with log.store.engine.begin() as connection:
        connection.execute(delete(audit_contents).where(audit_contents.c.idx >= 4))
        connection.execute(delete(audit_log).where(audit_log.c.idx >= 4))
        connection.execute(delete(audit_checkpoints).where(audit_checkpoints.c.tree_size > 4))
    assert cli("audit", "verify", "--skip-witnesses").exit_code == 0  # blind without it
    caught = cli("audit", "verify")
    assert caught.exit_code == 1
    assert f"witness {WITNESS} cosigned 8 records" in str(caught.exception)
    assert "rolled back" in str(caught.exception)
    again = cli("witness", "submit")
    assert again.exit_code == 1 and "rolled back" in str(again.exception)


def test_an_unreachable_witness_fails_verify_unless_skipped(tmp_path: Path, log: AuditLog) -> None:
    from appliance.audit.cosignature import Cosigner

    vkey = Cosigner.generate(WITNESS).verifier().verifier_key()
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens
    config = _appliance_yaml(tmp_path, [{"verifier_key": vkey, "url": url}])
    runner = CliRunner()
    failed = runner.invoke(app, ["audit", "verify", "--config", str(config)])
    assert failed.exit_code == 1 and WITNESS in str(failed.exception)
    skipped = runner.invoke(app, ["audit", "verify", "--skip-witnesses", "--config", str(config)])
    assert skipped.exit_code == 0, skipped.output
