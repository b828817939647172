"""A caller proves an answer long after it: the receipt from the gateway (header or SSE
comment), the proof fetched later with ``?since=`` and the saved answer verify with the
standalone verifier in a clean Python (only ``cryptography``), after 1,000 later
records and several checkpoints, on SQLite and PostgreSQL. One altered character of
the answer, the receipt or the proof fails, naming which. Another caller's proof is
403 and the refusal is in the log. ``appliance receipt verify --fetch`` does the same
over HTTP."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from appliance.audit import bundle_verifier
from appliance.audit.receipts import RECEIPT_HEADER
from appliance.audit.records import AuditEvent
from appliance.audit.store import SearchFilter, SqlAuditStore
from appliance.audit.wiring import audit_verifier
from appliance.cli.main import app as cli
from appliance.config import Settings
from appliance.db import create_db_engine, upgrade_database
from appliance.gateway import create_app
from appliance.gateway.services import utc_now
from appliance.identity.apikeys import ApiKeyService
from appliance.keys.deployment import DeploymentSecrets
from tests.integration.conftest import FAKE_MODELS, PEPPER, GatewayHarness
from tests.support.fake_vllm import SECRET, FakeState
from tests.support.receipts import without_receipt
from tests.support.requests import CHAT, auth, chat_body
from tests.support.servers import ServerThread

LATER_REQUESTS = 500  # each writes a request and a completion record: 1,000 records
ANSWER = "The capital of France is Paris."


@pytest.fixture
def db_harness(
    tmp_path: Path, fake_vllm: tuple[str, FakeState], database_url: str
) -> Iterator[GatewayHarness]:
    url, state = fake_vllm
    settings = Settings(
        data_dir=tmp_path / "data",
        database={"url": database_url},
        engine={"enabled": False},
        gateway={"upstreams": [{"model": name, "url": url} for name in FAKE_MODELS]},
    )
    database = create_db_engine(settings.database_url)
    upgrade_database(database)
    keys = ApiKeyService(database, PEPPER)
    harness = GatewayHarness(
        settings=settings,
        secrets=DeploymentSecrets(engine_api_key=SECRET, api_key_pepper=PEPPER),
        fake=state, keys=keys, store=SqlAuditStore(database), user_key="",
    )  # fmt: skip
    harness.user_key = harness.key()
    yield harness
    database.dispose()


def standalone(
    clean_python: tuple[Path, Path], workdir: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    python, site = clean_python
    shutil.copy(bundle_verifier.__file__, workdir / "verify_bundle.py")
    return subprocess.run(
        [str(python), "verify_bundle.py", *args],
        cwd=workdir, env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def _flip(text: str, at: int) -> str:
    """One base64 character changed for another: the bytes change, the form holds."""
    return text[:at] + ("B" if text[at] == "A" else "A") + text[at + 1 :]


def _fails(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert bundle_verifier.main(["receipt", *argv]) == 1
    return capsys.readouterr().err


def test_a_receipt_verifies_long_after_and_any_change_is_named(
    db_harness: GatewayHarness,
    clean_python: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    harness = db_harness
    user = auth(harness.user_key)
    auditor = auth(harness.key(roles=["appliance-auditor"]))
    app = create_app(harness.settings, secrets=harness.secrets)
    with TestClient(app, raise_server_exceptions=False) as client:
        whole = client.post(CHAT, json=chat_body(), headers=user)
        assert whole.status_code == 200
        with client.stream("POST", CHAT, json=chat_body(stream=True), headers=user) as streamed:
            raw = b"".join(streamed.iter_raw())
        _events, stream_receipt = without_receipt(raw)
        held = client.post("/audit/checkpoint", headers=auditor).text  # the caller keeps it
        for n in range(LATER_REQUESTS):
            assert client.post(CHAT, json=chat_body(), headers=user).status_code == 200
            if n % 125 == 124:  # several checkpoints in between
                assert client.post("/audit/checkpoint", headers=auditor).status_code == 200
        assert len(harness.store.checkpoints()) >= 5
        old_size = int(held.split("\n")[1])
        proofs = {}
        for name, response in (("whole", whole), ("stream", streamed)):
            rid = response.headers["x-request-id"]
            proof = client.get(f"/audit/receipts/{rid}/proof?since={old_size}", headers=user)
            assert proof.status_code == 200, proof.text
            proofs[name] = proof.json()

        # Another caller: 403, and the refusal is itself a record in the log.
        rid = whole.headers["x-request-id"]
        stranger = harness.keys.create(
            name="other", owner="other", roles=["appliance-user"], models=None, now=utc_now()
        )
        refused = client.get(f"/audit/receipts/{rid}/proof", headers=auth(stranger.secret))
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "receipt_forbidden"
        assert client.get(f"/audit/receipts/{rid}/proof", headers=auditor).status_code == 200
        unknown = client.get("/audit/receipts/no-such-id/proof", headers=user)
        assert unknown.json()["error"]["code"] == "receipt_not_found"
    denials = harness.store.search(SearchFilter(event=AuditEvent.DENIED.value, limit=1000))
    (denial,) = [d.entry.record for d in denials if d.entry.record.key_id == stranger.record.key_id]
    assert denial.path == f"/audit/receipts/{rid}/proof" and denial.status_code == 403
    assert (denial.denial_reason or "").startswith("receipt_forbidden: ")

    files = {
        "log.pub": audit_verifier(harness.settings).verifier_key() + "\n",
        "old.txt": held,
        "whole.receipt": whole.headers[RECEIPT_HEADER] + "\n",
        "whole.json": json.dumps(proofs["whole"]),
        "whole.answer.json": whole.text,  # the saved response body
        "stream.receipt": f": receipt {stream_receipt}\n",  # the SSE comment as it came
        "stream.json": json.dumps(proofs["stream"]),
        "stream.sse": raw.decode(),
        "answer.txt": ANSWER,
    }
    for name, text in files.items():
        (tmp_path / name).write_bytes(text.encode())
    new_size = int(proofs["whole"]["checkpoint"].split("\n")[1])
    assert new_size >= 2 * LATER_REQUESTS + old_size
    for name in ("whole", "stream"):
        answer = "whole.answer.json" if name == "whole" else "stream.sse"
        checked = standalone(
            clean_python, tmp_path, "receipt", f"{name}.receipt", "--key", "log.pub",
            "--proof", f"{name}.json", "--answer", answer, "--old", "old.txt",
        )  # fmt: skip
        assert checked.returncode == 0, checked.stderr
        assert f"included at tree size {new_size}" in checked.stdout
        assert f"extends tree size {old_size}; the answer text is the one sealed" in checked.stdout
        plain = standalone(
            clean_python, tmp_path, "receipt", f"{name}.receipt", "--key", "log.pub",
            "--proof", f"{name}.json", "--answer", "answer.txt",
        )  # fmt: skip
        assert plain.returncode == 0, plain.stderr

    base = ["--key", str(tmp_path / "log.pub")]
    receipt, proof = str(tmp_path / "whole.receipt"), str(tmp_path / "whole.json")
    # One character of the answer.
    (tmp_path / "altered.txt").write_text(ANSWER.replace("Paris", "Parts"))
    err = _fails(
        capsys, receipt, *base, "--proof", proof, "--answer", str(tmp_path / "altered.txt")
    )
    assert err.startswith("FAILED: answer text: ")
    # One character of the receipt.
    value = whole.headers[RECEIPT_HEADER]
    assert _fails(capsys, _flip(value, len(value) // 2), *base).startswith("FAILED: receipt")
    # One character of the proof, in each part.
    for part, named in _proof_alterations(proofs["whole"]):
        (tmp_path / "altered.json").write_text(json.dumps(part))
        err = _fails(capsys, receipt, *base, "--proof", str(tmp_path / "altered.json"))
        assert err.startswith(f"FAILED: {named}: "), (named, err)


def _proof_alterations(proof: dict[str, Any]) -> Iterator[tuple[dict[str, Any], str]]:
    def altered(path: tuple[Any, ...], at: int = 0) -> dict[str, Any]:
        document = json.loads(json.dumps(proof))
        holder = document
        for step in path[:-1]:
            holder = holder[step]
        holder[path[-1]] = _flip(holder[path[-1]], at)
        return document

    yield altered(("request", "inclusion_proof", 0)), "request inclusion"
    yield altered(("completion", "inclusion_proof", -1)), "completion inclusion"
    root_at = proof["checkpoint"].index("\n", proof["checkpoint"].index("\n") + 1) + 1
    yield altered(("checkpoint",), root_at), "checkpoint signature"
    yield altered(("consistency", "consistency_proof", 0)), "consistency"
    leaf = proof["completion"]["leaf"]
    yield altered(("completion", "leaf"), leaf.index('"request_id":"') + 14), "completion leaf"


def test_the_cli_fetches_the_proof_and_checks_the_answer(
    harness: GatewayHarness, tmp_path: Path
) -> None:
    auditor = auth(harness.key(roles=["appliance-auditor"]))
    other = harness.key()
    key = tmp_path / "log.pub"
    key.write_text(audit_verifier(harness.settings).verifier_key() + "\n")
    app = create_app(harness.settings, secrets=harness.secrets)
    runner = CliRunner()
    with ServerThread(app) as server:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            answered = http.post(CHAT, json=chat_body(), headers=auth(harness.user_key))
            assert http.post("/audit/checkpoint", headers=auditor).status_code == 200
        (tmp_path / "answer.json").write_text(answered.text)
        args = ["receipt", "verify", answered.headers[RECEIPT_HEADER], "--key", str(key),
                "--fetch", f"{server.url}/v1", "--answer", str(tmp_path / "answer.json"),
                "--save-proof", str(tmp_path / "proof.json")]  # fmt: skip
        ok = runner.invoke(cli, [*args, "--api-key", harness.user_key])
        assert ok.exit_code == 0, ok.output
        assert ok.output.startswith("OK: receipt for request ")
        assert json.loads((tmp_path / "proof.json").read_text())["request"]["leaf_index"] >= 0
        refused = runner.invoke(cli, args, env={"OPENAI_API_KEY": other})
        assert refused.exit_code == 1
        assert "403 receipt_forbidden" in str(refused.exception or "") + refused.output
        (tmp_path / "answer.json").write_text(answered.text.replace("Paris", "Paria"))
        wrong = runner.invoke(cli, [*args, "--api-key", harness.user_key])
        assert wrong.exit_code == 1
        assert "answer text" in str(wrong.exception or "") + wrong.output
