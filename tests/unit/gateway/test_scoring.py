"""What the audit reads from rerank and score bodies and answers: counts in clear, the
texts and the ranking for the sealed content, nothing from other APIs' bodies."""

from __future__ import annotations

from typing import Any

import pytest

from appliance.gateway.answers import answer_content, answer_of, answer_params
from appliance.gateway.auditing import request_content
from appliance.gateway.schemas import RerankRequest, ScoreRequest
from appliance.gateway.scoring import ranking_of, rerank_params, scoring_content

RERANK = {"model": "m", "query": "q", "documents": ["a", "b", "c"], "top_n": 2}
SCORE = {"model": "m", "queries": ["q", "r"], "documents": ["a", "b"], "instruction": "i"}
RERANK_ANSWER = {
    "id": "rerank-1", "model": "m", "usage": {"prompt_tokens": 4, "total_tokens": 4},
    "results": [
        {"index": 2, "document": {"text": "c"}, "relevance_score": 0.9},
        {"index": 0, "document": {"text": "a"}, "relevance_score": 0.1},
    ],
}  # fmt: skip
SCORE_ANSWER = {
    "object": "list", "model": "m", "usage": {"prompt_tokens": 4, "total_tokens": 4},
    "data": [{"index": 0, "object": "score", "score": 0.5},
             {"index": 1, "object": "score", "score": -0.25}],
}  # fmt: skip


def test_clear_params_are_counts() -> None:
    assert rerank_params(RERANK) == {"queries": 1, "documents": 3, "top_n": 2}
    assert rerank_params(SCORE) == {"queries": 2, "documents": 2}
    assert rerank_params({**SCORE, "queries": "q"}) == {"queries": 1, "documents": 2}


@pytest.mark.parametrize(
    "payload",
    [
        {"model": "m", "input": "x"},
        {"model": "m", "messages": [], "documents": [{"title": "t"}], "query": "q"},
        {"model": "m", "prompt": "p"},
    ],
    ids=["embeddings", "chat-with-documents", "completion"],
)
def test_other_bodies_are_not_scoring(payload: dict[str, Any]) -> None:
    assert rerank_params(payload) == {}
    assert scoring_content(payload) is None


def test_sealed_request_holds_the_texts() -> None:
    assert request_content(RERANK) == {"query": "q", "documents": ["a", "b", "c"]}
    assert request_content(SCORE) == {"queries": ["q", "r"], "documents": ["a", "b"],
                                      "instruction": "i"}  # fmt: skip


def test_ranking_of_rerank_and_score_answers() -> None:
    assert ranking_of(RERANK_ANSWER) == [{"index": 2, "score": 0.9}, {"index": 0, "score": 0.1}]
    assert ranking_of(SCORE_ANSWER) == [{"index": 0, "score": 0.5}, {"index": 1, "score": -0.25}]
    embeddings = {"object": "list", "data": [{"index": 0, "object": "embedding",
                                              "embedding": [0.1]}]}  # fmt: skip
    assert ranking_of(embeddings) is None
    assert ranking_of({"object": "list", "data": []}) is None


def test_answer_keeps_no_document_text_and_no_score_in_clear() -> None:
    answer = answer_of(RERANK_ANSWER)
    assert answer_params(answer) == {"results": 2}
    assert answer_content(answer) == {"ranking": ranking_of(RERANK_ANSWER)}
    # Embeddings are still read as embeddings.
    vectors = answer_of({"object": "list", "data": [{"object": "embedding", "embedding": [1.0]}]})
    assert answer_params(vectors) == {"embeddings": 1, "dimensions": 1}


def test_reservation_reads_each_pair() -> None:
    # Rerank: the 40-character query once per document (3) plus 3 documents of 4.
    rerank = RerankRequest.model_validate(
        {"model": "m", "query": "q" * 40, "documents": ["dddd"] * 3}
    )
    assert rerank.input_tokens() == (40 * 3 + 4 * 3) // 4
    # Score N:N: each query once, with its own document.
    score = ScoreRequest.model_validate(
        {"model": "m", "queries": ["q" * 40] * 3, "documents": ["dddd"] * 3}
    )
    assert score.input_tokens() == (40 * 3 + 4 * 3) // 4
