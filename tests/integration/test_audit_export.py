"""An exported evidence bundle verifies with its own verifier in a clean environment:
a fresh virtual environment that has only `cryptography` (no appliance, no SQLAlchemy)."""

from __future__ import annotations

import json
import subprocess
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from appliance.audit.access import Actor, shred_subject
from appliance.audit.checkpoint import NoteSigner
from appliance.audit.export import export_bundle
from appliance.audit.log import AuditLog
from tests.support.audit import ORIGIN, T0, StepClock, build_log, content_record

ACTOR = Actor(subject="cli:carol", username="carol")


def run_verifier(
    clean_python: tuple[Path, Path], bundle: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    python, site = clean_python
    workdir = bundle.parent / f"{bundle.stem}-unpacked"
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(workdir)
    return subprocess.run(
        [str(python), "verify_bundle.py", str(bundle), *args],
        cwd=workdir, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.fixture
def signer() -> NoteSigner:
    return NoteSigner.generate(ORIGIN)


@pytest.fixture
def log(migrated_engine: Engine, signer: NoteSigner) -> AuditLog:
    # Acts on the log (export, shred) happen a day after the records.
    log = build_log(migrated_engine, signer=signer, clock=StepClock(T0 + timedelta(days=1)))
    for start in range(0, 9, 3):
        log.append_batch([content_record(i) for i in range(start, start + 3)])
        log.checkpoint()
    log.append(content_record(9, subject="apikey:bob"))
    return log


def test_bundle_verifies_in_a_clean_environment(
    log: AuditLog, signer: NoteSigner, tmp_path: Path, clean_python: tuple[Path, Path]
) -> None:
    shred_subject(log, "apikey:bob", actor=ACTOR, reason="erasure before export")
    out = tmp_path / "bundle.zip"
    result = export_bundle(
        log, out, since=T0 + timedelta(seconds=2), until=T0 + timedelta(seconds=10),
        actor=ACTOR, reveal_reason="case 12",
    )  # fmt: skip
    assert result.records == 8  # records 2..9
    done = run_verifier(clean_python, out, "--key", signer.verifier().verifier_key())
    assert done.returncode == 0, done.stderr
    assert "OK: 8 records" in done.stdout
    with zipfile.ZipFile(out) as archive:
        lines = [json.loads(x) for x in archive.read("records.jsonl").decode().splitlines()]
        source = archive.read("verify_bundle.py").decode()
        assert not [
            x for x in source.splitlines() if x.startswith(("import appliance", "from appliance"))
        ]
    assert lines[0]["content"] == {"messages": [{"role": "user", "content": "question 2"}]}
    assert lines[-1]["content_status"] == "shredded"  # erased stays erased, proof holds


def tamper(bundle: Path, name: str, change) -> Path:  # type: ignore[no-untyped-def]
    out = bundle.with_name(f"tampered-{name}.zip")
    with zipfile.ZipFile(bundle) as source, zipfile.ZipFile(out, "w") as target:
        for item in source.namelist():
            data = source.read(item)
            target.writestr(item, change(data) if item == name else data)
    return out


def test_tampered_bundles_fail(
    log: AuditLog, signer: NoteSigner, tmp_path: Path, clean_python: tuple[Path, Path]
) -> None:
    out = tmp_path / "bundle.zip"
    export_bundle(log, out, since=None, until=None, actor=ACTOR)
    assert run_verifier(clean_python, out).returncode == 0

    changed = tamper(out, "records.jsonl", lambda d: d.replace(b"smollm2", b"smollm3", 1))
    failed = run_verifier(clean_python, changed)
    assert failed.returncode == 1 and "record 0" in failed.stderr

    forged = tamper(out, "checkpoint.txt", lambda d: d.replace(f"{ORIGIN}\n".encode(), b"x/y\n"))
    assert run_verifier(clean_python, forged).returncode == 1

    other = NoteSigner.generate(ORIGIN).verifier().verifier_key()
    wrong_key = run_verifier(clean_python, out, "--key", other)
    assert wrong_key.returncode == 1 and "not signed by the given key" in wrong_key.stderr

    dropped = tamper(out, "records.jsonl", lambda d: b"\n".join(d.split(b"\n")[1:]))
    assert run_verifier(clean_python, dropped).returncode == 1
