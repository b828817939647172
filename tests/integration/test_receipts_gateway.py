"""Every answer carries a receipt signed by the log's key (a header, or an SSE comment
just before the stream's end), naming the request and completion leaves as the log
holds them; the caller proves them later against a signed checkpoint."""

from __future__ import annotations

import base64

import openai
import pytest
from fastapi.testclient import TestClient

from appliance.audit.checkpoint import verify_checkpoint
from appliance.audit.merkle import verify_consistency, verify_inclusion
from appliance.audit.receipts import RECEIPT_HEADER, Receipt, decode_receipt, verify_receipt
from appliance.audit.records import AuditEvent
from appliance.audit.wiring import audit_verifier
from appliance.gateway import create_app
from tests.integration.conftest import GatewayHarness
from tests.support.receipts import without_receipt
from tests.support.requests import CHAT, auth, chat_body
from tests.support.servers import ServerThread


def _verified(harness: GatewayHarness, value: str) -> Receipt:
    settings = harness.settings
    receipt = verify_receipt(
        decode_receipt(value), audit_verifier(settings), origin=settings.audit.origin
    )
    request, done = harness.records(receipt.request_id)
    assert (request.event, done.event) == (AuditEvent.REQUEST, AuditEvent.COMPLETION)
    for leaf in (receipt.request, receipt.completion):  # the leaves the log holds
        (row,) = harness.store.leaf_rows_between(leaf.index, leaf.index + 1)
        assert row.stored_leaf_hash == leaf.leaf_hash
    assert harness.store.entry(request.record_id).entry.index == receipt.request.index  # type: ignore[union-attr]
    assert harness.store.entry(done.record_id).entry.index == receipt.completion.index  # type: ignore[union-attr]
    return receipt


def test_a_whole_answer_carries_its_receipt(client: TestClient, harness: GatewayHarness) -> None:
    response = client.post(CHAT, json=chat_body(), headers=auth(harness.user_key))
    assert response.status_code == 200
    receipt = _verified(harness, response.headers[RECEIPT_HEADER])
    assert receipt.request_id == response.headers["x-request-id"]


def test_a_refused_or_failed_request_gets_no_receipt(
    client: TestClient, harness: GatewayHarness
) -> None:
    for model in ("fake-400", "fake-500"):
        response = client.post(CHAT, json=chat_body(model), headers=auth(harness.user_key))
        assert response.status_code >= 400 and RECEIPT_HEADER not in response.headers


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (CHAT, chat_body(stream=True)),
        ("/v1/responses", {"model": "fake-model", "input": "hi", "stream": True}),
    ],
)
def test_a_stream_carries_its_receipt_just_before_its_end(
    client: TestClient, harness: GatewayHarness, path: str, body: dict[str, object]
) -> None:
    with client.stream("POST", path, json=body, headers=auth(harness.user_key)) as response:
        raw = b"".join(response.iter_raw())
    assert response.status_code == 200
    _stream, value = without_receipt(raw)  # one receipt, followed only by the last event
    assert _verified(harness, value).request_id == response.headers["x-request-id"]


def test_the_official_client_ignores_the_receipt(harness: GatewayHarness) -> None:
    app = create_app(harness.settings, secrets=harness.secrets)
    with ServerThread(app) as server:
        sdk = openai.OpenAI(base_url=f"{server.url}/v1", api_key=harness.user_key)
        chunks = list(
            sdk.chat.completions.create(
                model="fake-model", messages=[{"role": "user", "content": "hi"}], stream=True
            )
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "The capital of France is Paris."
        raw = sdk.chat.completions.with_raw_response.create(
            model="fake-model", messages=[{"role": "user", "content": "hi"}]
        )
        assert raw.parse().choices[0].message.content == "The capital of France is Paris."
        _verified(harness, raw.headers[RECEIPT_HEADER])


def test_the_caller_proves_the_receipt_against_a_signed_checkpoint(
    client: TestClient, harness: GatewayHarness
) -> None:
    auditor = auth(harness.key(roles=["appliance-auditor"]))
    first = client.post(CHAT, json=chat_body(), headers=auth(harness.user_key))
    assert client.post("/audit/checkpoint", headers=auditor).status_code == 200
    early = client.post(CHAT, json=chat_body(), headers=auth(harness.user_key))
    receipt = _verified(harness, early.headers[RECEIPT_HEADER])
    url = f"/audit/receipts/{receipt.request_id}/proof"
    too_soon = client.get(url, headers=auth(harness.user_key))
    assert too_soon.status_code == 400
    assert too_soon.json()["error"]["code"] == "receipt_not_yet_covered"

    signed = client.post("/audit/checkpoint", headers=auditor).text
    held = int(signed.split("\n")[1])  # the caller kept the first checkpoint's size
    old_size = harness.store.checkpoints()[0].tree_size
    proof = client.get(f"{url}?since={old_size}", headers=auth(harness.user_key))
    assert proof.status_code == 200, proof.text
    body = proof.json()
    settings = harness.settings
    checkpoint = verify_checkpoint(
        body["checkpoint"], audit_verifier(settings), origin=settings.audit.origin
    )
    assert checkpoint.size == held
    for name, leaf in (("request", receipt.request), ("completion", receipt.completion)):
        part = body[name]
        assert part["leaf_index"] == leaf.index
        assert base64.b64decode(part["leaf_hash"]) == leaf.leaf_hash
        hashes = [base64.b64decode(h) for h in part["inclusion_proof"]]
        verify_inclusion(leaf.leaf_hash, leaf.index, checkpoint.size, hashes, checkpoint.root_hash)
    consistency = body["consistency"]
    verify_consistency(
        old_size, checkpoint.size, harness.store.checkpoints()[0].root_hash,
        checkpoint.root_hash, [base64.b64decode(h) for h in consistency["consistency_proof"]],
    )  # fmt: skip

    # Only the caller's own: another user is refused (and audited: test_receipt_verify.py);
    # auditors get all; an id nobody used is 404.
    stranger = client.get(url, headers=auth(harness.key()))
    assert stranger.status_code == 403
    assert stranger.json()["error"]["code"] == "receipt_forbidden"
    assert client.get(url, headers=auditor).status_code == 200
    missing = client.get("/audit/receipts/no-such-request/proof", headers=auth(harness.user_key))
    assert missing.status_code == 404
    assert first.status_code == 200
