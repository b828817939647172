"""The engine process is SIGKILLed while it streams an answer (not an exception inside
it: the process and its sockets vanish). The client's stream ends with an OpenAI
error event and [DONE], the completion record says upstream error, the next request
to the dead engine is a clean 503, and the log verifies green."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from appliance.audit.records import AuditEvent, Outcome
from appliance.audit.verify import verify_log
from appliance.audit.wiring import audit_verifier
from appliance.gateway import create_app
from tests.support.requests import CHAT, auth, chat_body
from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
FAKE = """
import sys, uvicorn
sys.path.insert(0, {root!r})
from tests.support.fake_vllm import FakeState, create_fake_vllm
uvicorn.run(create_fake_vllm(FakeState()), host="127.0.0.1", port={port}, log_level="warning")
"""


@pytest.mark.timeout(60)
def test_engine_killed_mid_stream(tmp_path: Path, harness) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    engine = subprocess.Popen(
        [sys.executable, "-c", FAKE.format(root=str(ROOT), port=port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "fake engine did not start"
                time.sleep(0.1)
        upstreams = [{"model": "fake-slow", "url": f"http://127.0.0.1:{port}"}]
        settings = harness.settings.model_copy(
            update={"gateway": harness.settings.gateway.model_copy(
                update={"upstreams": [type(harness.settings.gateway.upstreams[0])(**u)
                                      for u in upstreams]})}
        )  # fmt: skip
        app = create_app(settings, secrets=harness.secrets)
        with TestClient(app, raise_server_exceptions=False) as client:
            body = chat_body("fake-slow", stream=True)
            with client.stream("POST", CHAT, json=body, headers=auth(harness.user_key)) as r:
                assert r.status_code == 200
                received = b""
                for chunk in r.iter_raw():
                    received += chunk
                    if received.count(b"tick") >= 3 and engine.poll() is None:
                        os.kill(engine.pid, signal.SIGKILL)
                        engine.wait(timeout=10)
            request_id = r.headers["x-request-id"]
            assert b'"code": "engine_error"' in received
            assert received.endswith(b"data: [DONE]\n\n")
            again = client.post(CHAT, json=chat_body("fake-slow"), headers=auth(harness.user_key))
            assert again.status_code == 503, again.text
            assert again.json()["error"]["code"] == "engine_unavailable"
        record = harness.records(request_id)[-1]
        assert record.event is AuditEvent.COMPLETION
        assert (record.outcome, record.status_code) == (Outcome.UPSTREAM_ERROR, 502)
        verify_log(harness.store, audit_verifier(settings), origin=settings.audit.origin)
    finally:
        if engine.poll() is None:
            engine.kill()
            engine.wait()
