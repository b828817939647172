"""The gateway writes into the sealed log: content encrypted, checkpoints signed, the
compliance API behind the auditor role, and the log verifies after shutdown."""

from __future__ import annotations

import base64
import hashlib
from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient

from appliance.audit.access import Actor, reveal
from appliance.audit.checkpoint import verify_checkpoint
from appliance.audit.merkle import verify_inclusion
from appliance.audit.records import AuditEvent
from appliance.audit.store import SqlAuditStore
from appliance.audit.verify import verify_log
from appliance.audit.wiring import audit_verifier, open_audit_log
from appliance.db import create_db_engine
from appliance.gateway import create_app
from tests.support.requests import CHAT, auth, chat_body

AUDITOR = Actor(subject="cli:test", username="test")


def sealed_log(harness):  # type: ignore[no-untyped-def]
    engine = create_db_engine(harness.settings.database_url)
    return open_audit_log(harness.settings, engine)


def test_prompt_and_answer_are_sealed_and_revealable(client, harness) -> None:
    response = client.post(CHAT, json=chat_body(temperature=0), headers=auth(harness.user_key))
    assert response.status_code == 200
    request, done = harness.records(response.headers["x-request-id"])
    log = sealed_log(harness)
    asked = reveal(log, request.record_id, actor=AUDITOR, reason="integration test")
    answered = reveal(log, done.record_id, actor=AUDITOR, reason="integration test")
    assert asked.content == {"messages": [{"role": "user", "content": "hi"}]}
    assert answered.content == {"response": ["The capital of France is Paris."]}
    # Nothing of the conversation is in the database file in clear.
    raw = open(harness.settings.database_url.removeprefix("sqlite:///"), "rb").read()
    assert b"Paris" not in raw


def test_streamed_answer_text_is_gathered_from_deltas(client, harness) -> None:
    with client.stream(
        "POST", CHAT, json=chat_body(stream=True), headers=auth(harness.user_key)
    ) as r:
        assert r.status_code == 200
        request_id = r.headers["x-request-id"]
        b"".join(r.iter_bytes())
    records = harness.records(request_id)
    assert [x.event for x in records] == [AuditEvent.REQUEST, AuditEvent.COMPLETION]
    shown = reveal(sealed_log(harness), records[1].record_id, actor=AUDITOR, reason="stream test")
    assert shown.content == {"response": ["The capital of France is Paris."]}


def test_completions_prompt_is_sealed(client, harness) -> None:
    response = client.post(
        "/v1/completions",
        json={"model": "fake-model", "prompt": "The capital of France is"},
        headers=auth(harness.user_key),
    )
    request = harness.records(response.headers["x-request-id"])[0]
    shown = reveal(sealed_log(harness), request.record_id, actor=AUDITOR, reason="prompt test")
    assert shown.content == {"prompt": "The capital of France is"}


def test_audit_api_needs_the_auditor_role(client, harness) -> None:
    for path in ("/audit/checkpoint", "/audit/records"):
        denied = client.get(path, headers=auth(harness.user_key))
        assert denied.status_code == 403
        assert denied.json()["error"]["code"] == "role_required"
        assert client.get(path).status_code == 401
    # Refused attempts at the audit API are themselves recorded.
    denied = [r for r in harness.store.latest(10) if r.path.startswith("/audit/")]
    assert {r.status_code for r in denied} == {401, 403}
    assert all(r.event.value == "request.denied" for r in denied)


def test_checkpoint_search_proof_and_reveal_through_the_api(client, harness) -> None:
    auditor = auth(harness.key(roles=["appliance-auditor"]))
    response = client.post(CHAT, json=chat_body(), headers=auth(harness.user_key))
    request_id = response.headers["x-request-id"]

    signed = client.post("/audit/checkpoint", headers=auditor)
    assert signed.status_code == 200
    latest = client.get("/audit/checkpoint", headers=auditor)
    assert latest.text == signed.text
    origin = harness.settings.audit.origin
    checkpoint = verify_checkpoint(latest.text, audit_verifier(harness.settings), origin=origin)
    assert checkpoint.size >= 2

    found = client.get("/audit/records", params={"request_id": request_id}, headers=auditor)
    records = found.json()["records"]
    assert [r["event"] for r in records] == ["inference.request", "inference.completion"]
    assert records[0]["content"]["sha256"]
    assert "messages" not in found.text

    proof = client.get(f"/audit/records/{records[0]['record_id']}/proof", headers=auditor).json()
    verify_inclusion(
        hashlib.sha256(b"\x00" + proof["leaf"].encode()).digest(),
        proof["leaf_index"], proof["tree_size"],
        [base64.b64decode(h) for h in proof["inclusion_proof"]], checkpoint.root_hash,
    )  # fmt: skip

    shown = client.post(
        f"/audit/records/{records[0]['record_id']}/reveal",
        json={"reason": "ticket 7"},
        headers=auditor,
    )
    assert shown.json()["content"] == {"messages": [{"role": "user", "content": "hi"}]}
    reads = client.get("/audit/records", params={"event": "audit.read"}, headers=auditor).json()
    assert reads["records"][-1]["params"] == {
        "record_id": records[0]["record_id"],
        "reason": "ticket 7",
    }

    witness = auth(harness.key(roles=["appliance-witness"]))
    assert client.get("/audit/checkpoint", headers=witness).status_code == 200
    assert client.get("/audit/records", headers=witness).status_code == 403


def test_concurrent_requests_then_shutdown_verify_green(harness) -> None:
    app = create_app(harness.settings, secrets=harness.secrets)
    with TestClient(app, raise_server_exceptions=False) as client:

        def ask(i: int) -> tuple[int, str]:
            r = client.post(CHAT, json=chat_body(), headers=auth(harness.user_key))
            return r.status_code, r.headers["x-request-id"]

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(ask, range(40)))
    ok = [request_id for status, request_id in results if status == 200]
    assert len(ok) == 40
    for request_id in ok:
        assert len(harness.records(request_id)) == 2
    engine = create_db_engine(harness.settings.database_url)
    report = verify_log(
        SqlAuditStore(engine),
        audit_verifier(harness.settings),
        origin=harness.settings.audit.origin,
    )
    assert report.records == 80
    assert report.uncovered == 0  # the writer signed the tail on shutdown


def test_restart_extends_the_same_log(harness) -> None:
    for _ in range(2):
        app = create_app(harness.settings, secrets=harness.secrets)
        with TestClient(app) as client:
            assert (
                client.post(CHAT, json=chat_body(), headers=auth(harness.user_key)).status_code
                == 200
            )
    engine = create_db_engine(harness.settings.database_url)
    report = verify_log(
        SqlAuditStore(engine),
        audit_verifier(harness.settings),
        origin=harness.settings.audit.origin,
    )
    assert (report.records, report.checkpoints, report.uncovered) == (4, 2, 0)
