"""appliance/cli/receipt.py: ``appliance receipt verify`` runs the standalone
verifier's checks and fails with one line naming what failed; ``--fetch`` asks the
gateway for the proof (over HTTP: tests/integration/test_receipt_verify.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from appliance.audit.checkpoint import NoteSigner, sign_note
from appliance.audit.receipts import (
    Receipt,
    ReceiptLeaf,
    commit_answer,
    encode_receipt,
    receipt_text,
)
from appliance.cli.main import app
from appliance.cli.receipt import fetch_proof, gateway_base
from appliance.errors import InvalidRequest, VerificationError

ORIGIN = "appliance.test/audit"


@pytest.fixture
def signed(tmp_path: Path) -> tuple[str, Path]:
    """(a receipt committing to "Paris.", the file holding the log's key)."""
    signer = NoteSigner.generate(ORIGIN)
    receipt = Receipt(
        ORIGIN, "req-1",
        ReceiptLeaf(0, hashlib.sha256(b"a").digest()),
        ReceiptLeaf(1, hashlib.sha256(b"b").digest()),
        commit_answer(["Paris."], bytes(32)),
    )  # fmt: skip
    key = tmp_path / "log.pub"
    key.write_text(signer.verifier().verifier_key() + "\n")
    return encode_receipt(sign_note(receipt_text(receipt), signer)), key


def test_verify_checks_the_signature_and_the_answer(
    signed: tuple[str, Path], tmp_path: Path
) -> None:
    value, key = signed
    (tmp_path / "receipt.txt").write_text(value + "\n")
    (tmp_path / "answer.txt").write_text("Paris.")
    runner = CliRunner()
    args = ["receipt", "verify", str(tmp_path / "receipt.txt"), "--key", str(key)]
    ok = runner.invoke(app, [*args, "--answer", str(tmp_path / "answer.txt")])
    assert ok.exit_code == 0, ok.output
    assert ok.output == (
        f"OK: receipt for request req-1 signed by {ORIGIN}; inclusion not checked (no proof); "
        "the answer text is the one sealed\n"
    )
    (tmp_path / "answer.txt").write_text("Paris!")
    wrong = runner.invoke(app, [*args, "--answer", str(tmp_path / "answer.txt")])
    assert wrong.exit_code == 1 and isinstance(wrong.exception, VerificationError)
    assert str(wrong.exception) == "answer text: not the answer the receipt commits to"
    stranger = NoteSigner.generate(ORIGIN).verifier().verifier_key()
    other = runner.invoke(app, ["receipt", "verify", value, "--key", stranger])
    assert isinstance(other.exception, VerificationError)
    assert str(other.exception).startswith("receipt signature: ")


def test_bad_arguments_are_one_line_errors(signed: tuple[str, Path], tmp_path: Path) -> None:
    value, key = signed
    (tmp_path / "proof.json").write_text("{not json")
    runner = CliRunner()
    args = ["receipt", "verify", value, "--key", str(key)]
    both = runner.invoke(app, [*args, "--proof", "p.json", "--fetch", "http://x"])
    assert isinstance(both.exception, InvalidRequest) and "not both" in str(both.exception)
    bad = runner.invoke(app, [*args, "--proof", str(tmp_path / "proof.json")])
    assert isinstance(bad.exception, InvalidRequest) and "not JSON" in str(bad.exception)
    missing = runner.invoke(app, [*args, "--answer", str(tmp_path / "nothing.txt")])
    assert isinstance(missing.exception, InvalidRequest) and "cannot read" in str(missing.exception)


def test_fetch_asks_for_the_receipts_completion_and_maps_refusals() -> None:
    seen: list[httpx.Request] = []

    def gateway(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/mine/proof"):
            return httpx.Response(200, json={"request_id": "mine"})
        error = {"message": "this request was made by another caller", "type": "permission_error",
                 "param": None, "code": "receipt_forbidden"}  # fmt: skip
        return httpx.Response(403, json={"error": error})

    with httpx.Client(transport=httpx.MockTransport(gateway)) as client:
        got = fetch_proof(client, "http://gw/v1/", "mine", completion_index=7, since=3)
        assert got == {"request_id": "mine"}
        assert str(seen[0].url) == "http://gw/audit/receipts/mine/proof?index=7&since=3"
        with pytest.raises(InvalidRequest, match="403 receipt_forbidden: this request"):
            fetch_proof(client, "http://gw", "a/b", completion_index=0)
        assert seen[1].url.raw_path == b"/audit/receipts/a%2Fb/proof?index=0"
    assert gateway_base("https://gw.example/v1") == "https://gw.example"
