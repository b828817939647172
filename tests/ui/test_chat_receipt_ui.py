"""The chat's "Receipt" control: under each answer, it downloads receipt-<request id>.json
with the signed receipt and, once a signed checkpoint covers the answer, its proof.

The gateway here signs checkpoints only every 60 s, so the answer is not covered at
first: the page says when the proof will be there, offers the receipt alone, and
retries once by itself (the browser's clock is fast-forwarded; an auditor signs the
checkpoint the retry finds)."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from appliance.audit.checkpoint import verify_checkpoint
from appliance.audit.merkle import verify_inclusion
from appliance.audit.receipts import Receipt, decode_receipt, verify_receipt
from appliance.audit.wiring import audit_verifier
from appliance.config import Settings
from appliance.db import create_db_engine, upgrade_database
from appliance.gateway import create_app
from appliance.gateway.services import utc_now
from appliance.identity.apikeys import ApiKeyService
from appliance.keys.deployment import DeploymentSecrets
from tests.support.fake_vllm import SECRET, FakeState
from tests.support.servers import ServerThread
from tests.ui.harness import DESKTOP, PEPPER, NewContext, screenshot, sign_in, ui_settings

ANSWER = "The capital of France is Paris."
INTERVAL_S = 60.0
RECEIPT_BUTTON = "Download the receipt and proof of this answer"


@contextmanager
def slow_checkpoints(tmp_path: Path, upstream_url: str) -> Iterator[tuple[str, Settings, str, str]]:
    """A live gateway that signs a checkpoint at most every INTERVAL_S: (url, settings,
    a user's key, an auditor's key)."""
    base = ui_settings(tmp_path, upstream_url)
    audit = base.audit.model_copy(update={"checkpoint_interval_s": INTERVAL_S})
    settings = base.model_copy(update={"audit": audit})
    database = create_db_engine(settings.database_url)
    upgrade_database(database)
    keys = ApiKeyService(database, PEPPER)

    def make(roles: list[str], owner: str) -> str:
        return keys.create(name=owner, owner=owner, roles=roles, models=None, now=utc_now()).secret

    user = make(["appliance-user"], "erin.employee")
    auditor = make(["appliance-auditor"], "carla.compliance")
    app = create_app(
        settings, secrets=DeploymentSecrets(engine_api_key=SECRET, api_key_pepper=PEPPER)
    )
    try:
        with ServerThread(app) as server:
            yield server.url, settings, user, auditor
    finally:
        database.dispose()


@pytest.fixture
def slow_gateway(
    tmp_path: Path, fake_vllm: tuple[str, FakeState]
) -> Iterator[tuple[str, Settings, str, str]]:
    with slow_checkpoints(tmp_path, fake_vllm[0]) as running:
        yield running


def _downloaded(download_info: Any) -> tuple[str, dict[str, Any]]:
    download = download_info.value
    path = download.path()
    assert path is not None, download.failure()
    return download.suggested_filename, json.loads(Path(path).read_text(encoding="utf-8"))


def _receipt_of(doc: dict[str, Any], settings: Settings) -> Receipt:
    """The file's receipt, checked with the log's public key."""
    receipt = verify_receipt(
        decode_receipt(doc["receipt"]), audit_verifier(settings), origin=settings.audit.origin
    )
    assert receipt.request_id == doc["request_id"]
    return receipt


def _check_proof(proof: dict[str, Any], receipt: Receipt, settings: Settings) -> None:
    """Both leaves the receipt names are in the tree of the signed checkpoint."""
    assert proof["request_id"] == receipt.request_id
    checkpoint = verify_checkpoint(
        proof["checkpoint"], audit_verifier(settings), origin=settings.audit.origin
    )
    for name, leaf in (("request", receipt.request), ("completion", receipt.completion)):
        part = proof[name]
        assert part["leaf_index"] == leaf.index
        assert base64.b64decode(part["leaf_hash"]) == leaf.leaf_hash
        hashes = [base64.b64decode(h) for h in part["inclusion_proof"]]
        verify_inclusion(leaf.leaf_hash, leaf.index, checkpoint.size, hashes, checkpoint.root_hash)


def _verify_offline(doc: dict[str, Any], settings: Settings, folder: Path) -> str:
    """Follow the file's own steps: the jq extractions (done here as jq would, jq is
    no test tool), then its ``appliance receipt verify`` command, literally, in a shell.
    The command's output; AssertionError if it fails."""
    folder.mkdir()
    request_id = doc["request_id"]
    (folder / f"receipt-{request_id}.txt").write_text(doc["receipt"] + "\n", encoding="utf-8")
    if doc["proof"] is not None:
        (folder / f"proof-{request_id}.json").write_text(json.dumps(doc["proof"]), "utf-8")
    (folder / f"answer-{request_id}.txt").write_bytes(doc["answer"].encode("utf-8"))
    (folder / "log-key.txt").write_text(audit_verifier(settings).verifier_key() + "\n", "utf-8")
    command = doc["verify"]["steps"][-1]
    assert command.startswith(doc["verify"]["command"] + " ")
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    done = subprocess.run(
        ["bash", "-c", command], cwd=folder, env={**os.environ, "PATH": path},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_receipt_link_downloads_the_receipt_then_its_proof(
    new_context: NewContext, slow_gateway: tuple[str, Settings, str, str], tmp_path: Path
) -> None:
    url, settings, user_key, auditor_key = slow_gateway
    context = new_context(viewport=DESKTOP, accept_downloads=True)
    page = context.new_page()
    page.clock.install()  # time flows, and the test can jump it to the automatic retry
    sign_in(page, url, user_key)
    page.select_option("#model", "fake-model")
    page.fill("#prompt", "What is the capital of France?")
    page.keyboard.press("Enter")
    answer = page.locator(".msg.assistant").last
    answer.locator(".body").filter(has_text=ANSWER).wait_for()

    # A real, labelled button under the answer, used here with the keyboard.
    link = answer.get_by_role("button", name=RECEIPT_BUTTON)
    link.wait_for()
    assert link.text_content() == "Receipt"
    link.focus()
    page.keyboard.press("Enter")
    status = answer.locator(".receipt-status")
    status.filter(has_text="Proof available in about").wait_for()
    found = re.search(r"about (\d+) s", status.text_content() or "")
    assert found is not None and 1 < int(found.group(1)) <= INTERVAL_S + 1
    screenshot(page, "chat-receipt-pending", tmp_path)

    # Not covered yet: the receipt alone, which the log's key already vouches for.
    with page.expect_download() as alone:
        answer.get_by_role("button", name="Download receipt only").click()
    name, doc = _downloaded(alone)
    receipt = _receipt_of(doc, settings)
    assert name == f"receipt-{receipt.request_id}.json"
    assert doc["proof"] is None and doc["answer"] == ANSWER
    assert "--proof" not in doc["verify"]["steps"][-1]
    assert _verify_offline(doc, settings, tmp_path / "alone").startswith("OK")
    status.filter(has_text="without its proof").wait_for()

    # Asked again, the page retries once by itself after the interval; by then an auditor
    # has signed a checkpoint, and the download holds the proof.
    link.click()
    status.filter(has_text="Proof available in about").wait_for()
    signed = httpx.post(
        f"{url}/audit/checkpoint", headers={"Authorization": f"Bearer {auditor_key}"}
    )
    assert signed.status_code == 200, signed.text
    with page.expect_download() as later:
        page.clock.fast_forward(int((INTERVAL_S + 2) * 1000))
    name, doc = _downloaded(later)
    assert name == f"receipt-{receipt.request_id}.json"
    assert _receipt_of(doc, settings) == receipt
    _check_proof(doc["proof"], receipt, settings)
    status.filter(has_text="Downloaded with its proof").wait_for()
    assert "--proof" in doc["verify"]["steps"][-1]
    assert _verify_offline(doc, settings, tmp_path / "proved").startswith("OK")
    # The steps can fail: an answer altered by one character is caught.
    doc["answer"] = ANSWER.replace("Paris", "Paris!")
    with pytest.raises(AssertionError, match="answer text"):
        _verify_offline(doc, settings, tmp_path / "altered")

    # The receipt is kept with the (sealed) conversation: after a reload, the answer
    # from history offers it too, and the proof comes at once.
    page.reload()
    reloaded = page.locator(".msg.assistant").last
    reloaded.locator(".body").filter(has_text=ANSWER).wait_for()
    with page.expect_download() as again:
        reloaded.get_by_role("button", name=RECEIPT_BUTTON).click()
    _name, doc = _downloaded(again)
    _check_proof(doc["proof"], _receipt_of(doc, settings), settings)
    assert doc["request_id"] == receipt.request_id


def test_an_answer_without_a_receipt_gets_no_link(
    new_context: NewContext, slow_gateway: tuple[str, Settings, str, str]
) -> None:
    """A stopped answer was never sealed whole: no receipt came, so no link is shown."""
    url, _settings, user_key, _auditor = slow_gateway
    page = new_context(viewport=DESKTOP).new_page()
    sign_in(page, url, user_key)
    page.select_option("#model", "fake-slow")
    page.fill("#prompt", "Tell me a long story")
    page.click("#send")
    page.locator(".msg.assistant .body").filter(has_text="tick").wait_for()
    page.click("#stop")
    page.locator(".msg.assistant .who").filter(has_text="(stopped)").wait_for()
    assert page.locator(".msg.assistant .receipt-link").count() == 0
