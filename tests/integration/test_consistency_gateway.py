"""``GET /audit/consistency`` through the gateway: a witness fetches a proof between two
checkpoints and verifies it with the standalone verifier in a clean Python (only
`cryptography`); sizes it cannot prove are OpenAI-shaped 400s."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from appliance.audit import bundle_verifier
from appliance.audit.wiring import audit_verifier
from tests.support.requests import CHAT, auth, chat_body


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


def test_a_witness_checks_that_the_log_only_grew(
    client, harness, clean_python: tuple[Path, Path], tmp_path: Path
) -> None:
    auditor = auth(harness.key(roles=["appliance-auditor"]))
    witness = auth(harness.key(roles=["appliance-witness"]))
    client.post(CHAT, json=chat_body(), headers=auth(harness.user_key))
    first = client.post("/audit/checkpoint", headers=auditor).text
    (tmp_path / "old.txt").write_text(first)  # the copy the witness keeps
    for _ in range(3):
        client.post(CHAT, json=chat_body(), headers=auth(harness.user_key))
    second = client.post("/audit/checkpoint", headers=auditor).text
    old_size, new_size = int(first.split("\n")[1]), int(second.split("\n")[1])
    assert 0 < old_size < new_size

    response = client.get("/audit/consistency", params={"from": old_size}, headers=witness)
    assert response.status_code == 200, response.text
    proof = response.json()
    assert set(proof) == {
        "origin", "old_size", "new_size", "old_root_hash", "new_root_hash",
        "consistency_proof", "old_checkpoint", "new_checkpoint",
    }  # fmt: skip
    assert (proof["old_size"], proof["new_size"]) == (old_size, new_size)  # to: the latest
    assert (proof["old_checkpoint"], proof["new_checkpoint"]) == (first, second)
    assert proof["origin"] == harness.settings.audit.origin
    (tmp_path / "proof.json").write_text(response.text)
    (tmp_path / "log.pub").write_text(audit_verifier(harness.settings).verifier_key() + "\n")

    checked = standalone(
        clean_python, tmp_path, "consistency", "proof.json", "--key", "log.pub", "--old", "old.txt"
    )
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout == (
        f"OK: {proof['origin']} at tree size {new_size} extends tree size {old_size}\n"
    )

    proof["consistency_proof"][-1] = base64.b64encode(bytes(32)).decode()
    (tmp_path / "bad.json").write_text(json.dumps(proof))
    failed = standalone(clean_python, tmp_path, "consistency", "bad.json", "--key", "log.pub")
    assert failed.returncode == 1
    assert failed.stderr.startswith(f"FAILED: tree size {old_size} to {new_size}: ")


def test_only_auditors_and_witnesses_may_ask(client, harness) -> None:
    auditor = auth(harness.key(roles=["appliance-auditor"]))
    client.post(CHAT, json=chat_body(), headers=auth(harness.user_key))
    client.post("/audit/checkpoint", headers=auditor)
    assert client.get("/audit/consistency?from=1", headers=auditor).status_code == 200
    denied = client.get("/audit/consistency?from=1", headers=auth(harness.user_key))
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "role_required"
    assert client.get("/audit/consistency?from=1").status_code == 401


def test_no_checkpoint_yet_is_a_404(client, harness) -> None:
    witness = auth(harness.key(roles=["appliance-witness"]))
    response = client.get("/audit/consistency?from=0", headers=witness)  # an empty log
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "no_checkpoint"


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("from=3&to=2", "from"),
        ("from=-1&to=1", "from"),
        ("from=0&to=100000", "to"),
        ("from=0&to=99999999999999999999999999", "to"),
        ("from=abc&to=1", "query.from"),
        ("from=1.5&to=2", "query.from"),
        ("from=0&to=two", "query.to"),
        ("to=1", "query.from"),
    ],
    ids=[
        "from-past-to", "negative", "past-the-end", "huge", "word", "fraction", "word-to",
        "missing-from",
    ],
)  # fmt: skip
def test_sizes_it_cannot_prove_are_400s(client, harness, query: str, param: str) -> None:
    auditor = auth(harness.key(roles=["appliance-auditor"]))
    client.post(CHAT, json=chat_body(), headers=auth(harness.user_key))
    client.post("/audit/checkpoint", headers=auditor)
    response = client.get(f"/audit/consistency?{query}", headers=auditor)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        "invalid_request",
        param,
    )
