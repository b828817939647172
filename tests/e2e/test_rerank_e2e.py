"""Rerank and score from the real embedding engine (the dev model under vLLM's pooling
runner, ``--convert embed``): vLLM scores a pair by the cosine similarity of the two
embeddings, so a relevant document ranks first and a score equals the dot product of
the (normalised) vectors the gateway's own ``/v1/embeddings`` hands back."""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest

from appliance.audit.records import AuditEvent, Outcome
from appliance.audit.store import SqlAuditStore
from appliance.db import create_db_engine
from tests.e2e.conftest import EMBED_NAME, SERVED_NAME, RunningAppliance

pytestmark = pytest.mark.e2e

QUERY = "capital of France"
DOCUMENTS = ["Paris is the capital of France", "Bananas are yellow"]
TOLERANCE = 1e-3


def post(appliance: RunningAppliance, path: str, body: dict[str, Any]) -> httpx.Response:
    headers = {"Authorization": f"Bearer {appliance.admin_key}"}
    return httpx.post(f"{appliance.url}{path}", json=body, headers=headers, timeout=300)


def records(appliance: RunningAppliance, request_id: str) -> list[Any]:
    engine = create_db_engine(appliance.database_url)
    try:
        return SqlAuditStore(engine).by_request(request_id)
    finally:
        engine.dispose()


def test_rerank_puts_the_relevant_document_first(appliance: RunningAppliance) -> None:
    response = post(
        appliance, "/v1/rerank", {"model": EMBED_NAME, "query": QUERY, "documents": DOCUMENTS}
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["model"] == EMBED_NAME
    results = answer["results"]
    assert [item["index"] for item in results] == [0, 1]
    assert results[0]["document"]["text"] == DOCUMENTS[0]
    assert results[0]["relevance_score"] > results[1]["relevance_score"]
    tokens = answer["usage"]["prompt_tokens"]
    assert tokens > 0
    request, done = records(appliance, response.headers["x-request-id"])
    assert (request.event, done.event) == (AuditEvent.REQUEST, AuditEvent.COMPLETION)
    assert (done.outcome, done.model, done.prompt_tokens) == (Outcome.OK, EMBED_NAME, tokens)
    assert request.params == {"queries": 1, "documents": 2}
    assert done.params == {"queries": 1, "documents": 2, "results": 2}


def test_score_is_the_cosine_of_the_embeddings(appliance: RunningAppliance) -> None:
    response = post(
        appliance, "/v1/score", {"model": EMBED_NAME, "queries": QUERY, "documents": DOCUMENTS}
    )
    assert response.status_code == 200, response.text
    scores = [item["score"] for item in response.json()["data"]]
    embedded = post(
        appliance, "/v1/embeddings", {"model": EMBED_NAME, "input": [QUERY, *DOCUMENTS]}
    )
    assert embedded.status_code == 200, embedded.text
    query, *documents = [item["embedding"] for item in embedded.json()["data"]]
    expected = [math.fsum(a * b for a, b in zip(query, doc, strict=True)) for doc in documents]
    assert scores == pytest.approx(expected, abs=TOLERANCE)
    assert scores[0] > scores[1]
    (_request, done) = records(appliance, response.headers["x-request-id"])
    assert done.params == {"queries": 1, "documents": 2, "results": 2}


def test_rerank_on_the_chat_model_is_a_400(appliance: RunningAppliance) -> None:
    response = post(
        appliance, "/v1/rerank", {"model": SERVED_NAME, "query": QUERY, "documents": DOCUMENTS}
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", "model")
    assert f"model {SERVED_NAME} does not serve /v1/rerank" in error["message"]
