"""Rerank and score through the trust layer, as embeddings go: identity, model policy,
limits and audit. The audit seals the query and documents (request) and the ranking
(completion); the clear metadata holds counts only, never a score or a text."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from appliance.audit.access import Actor, reveal
from appliance.audit.receipts import RECEIPT_HEADER, decode_receipt, verify_receipt
from appliance.audit.records import AuditEvent, Outcome
from appliance.audit.store import SqlAuditStore
from appliance.audit.wiring import audit_verifier, open_audit_log
from appliance.config import LimitsSettings
from appliance.db import create_db_engine, upgrade_database
from appliance.gateway import create_app
from appliance.identity.apikeys import ApiKeyService
from appliance.keys.deployment import DeploymentSecrets
from tests.integration.conftest import FAKE_MODELS, PEPPER, GatewayHarness, make_settings
from tests.support.fake_scoring import fake_score
from tests.support.fake_vllm import EMBED_MODEL, SECRET, FakeState
from tests.support.requests import auth

RERANK = "/v1/rerank"
SCORE = "/v1/score"
AUDITOR = Actor(subject="cli:test", username="test")
CANARY = "canary-rerank-3b9e"
QUERY = f"capital of France {CANARY}"
DOCUMENTS = ["Bananas are yellow", "Paris is the capital of France", "France has cheese"]
MAX_DOCUMENTS = 4


@pytest.fixture
def harness(tmp_path: Path, fake_vllm: tuple[str, FakeState]) -> GatewayHarness:
    """The integration harness with an embedding model and a small batch limit."""
    url, state = fake_vllm
    upstreams = [{"model": name, "url": url} for name in [*FAKE_MODELS, EMBED_MODEL]]
    settings = make_settings(
        tmp_path, url, max_body_bytes=4096, max_embedding_inputs=MAX_DOCUMENTS,
        upstreams=upstreams,
    )  # fmt: skip
    database = create_db_engine(settings.database_url)
    upgrade_database(database)
    harness = GatewayHarness(
        settings=settings,
        secrets=DeploymentSecrets(engine_api_key=SECRET, api_key_pepper=PEPPER),
        fake=state,
        keys=ApiKeyService(database, PEPPER),
        store=SqlAuditStore(database),
        user_key="",
    )
    harness.user_key = harness.key()
    return harness


def post(client: TestClient, key: str, path: str, **body: Any) -> Any:
    return client.post(path, json={"model": EMBED_MODEL, **body}, headers=auth(key))


def sealed(harness: GatewayHarness, record_id: str) -> dict[str, Any] | None:
    log = open_audit_log(harness.settings, create_db_engine(harness.settings.database_url))
    content: dict[str, Any] | None = reveal(log, record_id, actor=AUDITOR, reason="test").content
    return content


def raw_store(harness: GatewayHarness) -> bytes:
    path = Path(harness.settings.database_url.removeprefix("sqlite:///"))
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def test_rerank_ranks_the_relevant_document_first(client, harness) -> None:
    body = {"query": QUERY, "documents": DOCUMENTS}
    response = post(client, harness.user_key, RERANK, **body)
    assert response.status_code == 200, response.text
    assert harness.fake.requests[-1] == {"model": EMBED_MODEL, **body}  # forwarded as sent
    assert response.content == harness.fake.sent[-1]  # the engine's answer, byte for byte
    answer = response.json()
    assert [item["index"] for item in answer["results"]] == [1, 2, 0]
    assert answer["results"][0]["relevance_score"] == fake_score(QUERY, DOCUMENTS[1]) == 0.5
    assert answer["usage"] == {"prompt_tokens": 16, "total_tokens": 16}


def test_rerank_top_n_passes_through(client, harness) -> None:
    response = post(client, harness.user_key, RERANK, query=QUERY, documents=DOCUMENTS, top_n=1)
    assert response.status_code == 200, response.text
    assert [item["index"] for item in response.json()["results"]] == [1]
    request, done = harness.records(response.headers["x-request-id"])
    assert request.params == {"queries": 1, "documents": 3, "top_n": 1}
    assert done.params == {"queries": 1, "documents": 3, "top_n": 1, "results": 1}


@pytest.mark.parametrize(
    ("queries", "expected"),
    [
        (QUERY, [fake_score(QUERY, document) for document in DOCUMENTS]),
        (["bananas", "paris", "cheese"], [1 / 3, 1 / 6, 1 / 3]),
    ],
    ids=["one-to-n", "n-to-n"],
)
def test_score_pairs(client, harness, queries: str | list[str], expected: list[float]) -> None:
    response = post(client, harness.user_key, SCORE, queries=queries, documents=DOCUMENTS)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert [(item["index"], item["object"]) for item in data] == [(0, "score"), (1, "score"),
                                                                  (2, "score")]  # fmt: skip
    assert [item["score"] for item in data] == pytest.approx(expected)
    request, done = harness.records(response.headers["x-request-id"])
    count = 1 if isinstance(queries, str) else 3
    assert request.params == {"queries": count, "documents": 3}
    assert done.params == {"queries": count, "documents": 3, "results": 3}
    assert done.prompt_tokens == response.json()["usage"]["prompt_tokens"]


def test_audit_seals_query_documents_and_ranking(client, harness) -> None:
    documents = [f"{CANARY} {document}" for document in DOCUMENTS]
    response = post(client, harness.user_key, RERANK, query=QUERY, documents=documents)
    assert response.status_code == 200
    request, done = harness.records(response.headers["x-request-id"])
    assert (request.event, done.event) == (AuditEvent.REQUEST, AuditEvent.COMPLETION)
    assert (done.outcome, done.status_code, done.model) == (Outcome.OK, 200, EMBED_MODEL)
    assert request.path == RERANK
    assert (done.prompt_tokens, done.completion_tokens) == (19, None)
    # Counts only in clear: no text, no score.
    assert done.params == {"queries": 1, "documents": 3, "results": 3}
    results = response.json()["results"]
    for record in (request, done):
        clear = json.dumps(record.params)
        assert "canary" not in clear and "Paris" not in clear
        assert all(repr(item["relevance_score"]) not in clear for item in results)
    assert b"canary" not in raw_store(harness)
    # Sealed: the query and documents in the request, the ranking in the completion
    # (indices and scores, not the documents again).
    assert sealed(harness, request.record_id) == {"query": QUERY, "documents": documents}
    assert sealed(harness, done.record_id) == {
        "ranking": [{"index": r["index"], "score": r["relevance_score"]} for r in results]
    }


def test_an_answer_carries_a_receipt(client, harness) -> None:
    response = post(client, harness.user_key, SCORE, queries="q", documents=["a", "b"])
    assert response.status_code == 200
    settings = harness.settings
    receipt = verify_receipt(
        decode_receipt(response.headers[RECEIPT_HEADER]),
        audit_verifier(settings),
        origin=settings.audit.origin,
    )
    assert receipt.request_id == response.headers["x-request-id"]
    assert receipt.answer is None  # no answer text to commit to (as for embeddings)


def test_limits_charge_input_tokens_and_settle_on_usage(harness) -> None:
    # A 60-character query and a 43-character document: 25 tokens reserved, 15 used
    # (one per word). Two fit in 50 tokens with settlement, a third reservation does
    # not; reserving a completion's answer cap would refuse the first.
    limits = LimitsSettings(roles={"appliance-user": {"tpm": 50}})  # type: ignore[dict-item]
    settings = harness.settings.model_copy(update={"limits": limits})
    body = {"query": "paris " * 9 + "france", "documents": ["qqqqqqqqq " * 4 + "qqq"]}
    with TestClient(create_app(settings, secrets=harness.secrets)) as client:
        codes = [post(client, harness.user_key, RERANK, **body).status_code for _ in range(3)]
    assert codes == [200, 200, 429]


def test_model_policy_applies(client, harness) -> None:
    chat_only = harness.key(models=["fake-model"])
    response = post(client, chat_only, RERANK, query="q", documents=["a"])
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "model_not_allowed"
    (denied,) = harness.records(response.headers["x-request-id"])
    assert (denied.event, denied.outcome, denied.path) == (
        AuditEvent.DENIED, Outcome.DENIED, RERANK,
    )  # fmt: skip
    missing = client.post(
        SCORE,
        json={"model": "nope", "queries": "q", "documents": ["a"]},
        headers=auth(harness.user_key),
    )
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "model_not_found"
    anonymous = client.post(RERANK, json={"model": EMBED_MODEL, "query": "q", "documents": ["a"]})
    assert anonymous.status_code == 401


@pytest.mark.parametrize("path", [RERANK, SCORE])
def test_a_chat_model_is_a_400_and_audited(client, harness, path: str) -> None:
    body = {"query": CANARY} if path == RERANK else {"queries": CANARY}
    response = client.post(
        path,
        json={"model": "fake-model", "documents": ["a"], **body},
        headers=auth(harness.user_key),
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error", "invalid_request", "model",
    )  # fmt: skip
    assert error["message"] == (
        f"model fake-model does not serve {path} (the engine answered: Not Found)"
    )
    request, done = harness.records(response.headers["x-request-id"])
    assert (done.event, done.outcome, done.status_code) == (
        AuditEvent.COMPLETION, Outcome.INVALID, 400,
    )  # fmt: skip
    assert sealed(harness, request.record_id) == {**body, "documents": ["a"]}


@pytest.mark.parametrize(
    ("path", "body", "param", "fragment"),
    [
        (RERANK, {"documents": ["a"]}, "query", "Field required"),
        (RERANK, {"query": "", "documents": ["a"]}, "query", "at least 1 character"),
        (RERANK, {"query": 3, "documents": ["a"]}, "query", "valid string"),
        (RERANK, {"query": "q"}, "documents", "Field required"),
        (RERANK, {"query": "q", "documents": "a"}, "documents", "valid list"),
        (RERANK, {"query": "q", "documents": []}, "documents", "at least 1 item"),
        (RERANK, {"query": "q", "documents": ["a", ""]}, "documents.1", "at least 1 character"),
        (RERANK, {"query": "q", "documents": [{"content": []}]}, "documents.0", "valid string"),
        (RERANK, {"query": "q", "documents": ["a"] * (MAX_DOCUMENTS + 1)}, "documents",
         f"limit is {MAX_DOCUMENTS}"),
        (RERANK, {"query": "q", "documents": ["a"], "top_n": -1}, "top_n", "greater than"),
        (RERANK, {"query": "q", "documents": ["a"], "top_n": "all"}, "top_n", "valid integer"),
        (RERANK, {"query": "q", "documents": ["a"], "stream": True}, "stream", "not streamed"),
        (SCORE, {"queries": ["a", "b"], "documents": ["a", "b", "c"]}, "queries", "1:N or N:N"),
        (SCORE, {"text_1": "a", "text_2": ["b"]}, "documents", "Field required"),
        (SCORE, {"queries": [""], "documents": ["a"]}, "queries", "non-empty string"),
        (SCORE, {"queries": 1, "documents": ["a"]}, "queries", "non-empty string"),
        (RERANK, {"model": "", "query": "q", "documents": ["a"]}, "model", "at least 1"),
    ],
    ids=[
        "no-query", "empty-query", "number-query", "no-documents", "string-documents",
        "empty-documents", "empty-document", "multimodal-document", "oversized", "negative-top-n",
        "text-top-n", "stream", "score-mismatch", "score-legacy-fields", "score-empty-query",
        "score-number-query", "no-model",
    ],
)  # fmt: skip
def test_bad_input_is_an_openai_400_naming_the_param(
    client, harness, path: str, body: dict[str, Any], param: str, fragment: str
) -> None:
    sent = len(harness.fake.requests)
    response = post(client, harness.user_key, path, **body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_request")
    assert error["param"] is not None and error["param"].startswith(param)
    assert fragment in error["message"]
    assert len(harness.fake.requests) == sent  # never reached the engine
    (denied,) = harness.records(response.headers["x-request-id"])
    assert (denied.event, denied.status_code) == (AuditEvent.DENIED, 400)


def test_engine_refusals_leave_the_engine_serving(client, harness) -> None:
    for path, body in ((RERANK, {"query": "q"}), (SCORE, {"queries": "q"})):
        bad = client.post(
            path, json={"model": "fake-model", "documents": ["a"], **body},
            headers=auth(harness.user_key),
        )  # fmt: skip
        assert bad.status_code == 400
        good = post(client, harness.user_key, path, documents=["a"], **body)
        assert good.status_code == 200, good.text


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/rerank", {"query": QUERY, "documents": DOCUMENTS}),
        ("/v2/rerank", {"query": QUERY, "documents": DOCUMENTS}),
        ("/score", {"queries": QUERY, "documents": DOCUMENTS}),
    ],
)
def test_vllms_other_paths_are_served_and_audited_alike(
    client, harness, path: str, body: dict[str, Any]
) -> None:
    response = post(client, harness.user_key, path, **body)
    assert response.status_code == 200, response.text
    assert harness.fake.requests[-1] == {"model": EMBED_MODEL, **body}
    assert response.content == harness.fake.sent[-1]
    request, done = harness.records(response.headers["x-request-id"])
    assert (request.path, done.path) == (path, path)
    assert done.params["documents"] == 3
    # Refusals on these paths are audited too.
    chat_only = harness.key(models=["fake-model"])
    refused = post(client, chat_only, path, **body)
    assert refused.status_code == 403
    (denied,) = harness.records(refused.headers["x-request-id"])
    assert (denied.event, denied.path) == (AuditEvent.DENIED, path)
