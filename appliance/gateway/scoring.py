"""``/v1/rerank`` and ``/v1/score`` as the audit reads them. Pure.

Both go through :func:`appliance.gateway.proxy.proxy_openai` like embeddings (their
bodies are :class:`~appliance.gateway.schemas.RerankRequest` and
:class:`~appliance.gateway.schemas.ScoreRequest`). The clear-text metadata holds counts
only: how many queries and documents, ``top_n``, how many results came back. The query
and documents are sealed in the request record; the ranking (each result's document
index and score, never the document text the engine echoes back) is sealed in the
completion record. Scores stay out of the clear metadata: like vectors they are
derived from the sealed text, and an order of relevance says something about it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ranking_of", "rerank_params", "scoring_content"]


def _is_scoring(payload: dict[str, Any]) -> bool:
    """A rerank or score body (chat requests may carry ``documents`` too, for RAG
    chat templates, but never without their messages)."""
    if any(key in payload for key in ("messages", "prompt", "input")):
        return False
    return "documents" in payload and ("query" in payload or "queries" in payload)


def rerank_params(payload: dict[str, Any]) -> dict[str, Any]:
    """What a (validated) rerank or score request says in clear: ``queries`` and
    ``documents`` (how many), and ``top_n`` when sent. Other requests: nothing."""
    if not _is_scoring(payload):
        return {}
    queries = payload.get("queries", payload.get("query"))
    params: dict[str, Any] = {
        "queries": len(queries) if isinstance(queries, list) else 1,
        "documents": len(payload["documents"]),
    }
    if isinstance(payload.get("top_n"), int) and not isinstance(payload["top_n"], bool):
        params["top_n"] = payload["top_n"]
    return params


def scoring_content(payload: dict[str, Any]) -> dict[str, Any] | None:
    """The sealed content of a rerank or score request: ``query`` (or ``queries``),
    ``documents`` and an ``instruction`` if sent; None for other requests."""
    if not _is_scoring(payload):
        return None
    keys = ("query", "queries", "documents", "instruction")
    return {key: payload[key] for key in keys if key in payload}


def _result(item: Any, score_key: str) -> dict[str, Any] | None:
    if not isinstance(item, dict):
        return None
    index, score = item.get("index"), item.get(score_key)
    if not isinstance(index, int) or not isinstance(score, int | float):
        return None
    return {"index": index, "score": score}


def ranking_of(answer: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The results of a rerank answer (``results[].index`` and ``relevance_score``, in
    the engine's order: best first) or a score answer (``data[].index`` and ``score``,
    each ``object: "score"``), each as ``{"index", "score"}``; None for any other answer
    (an embeddings list holds ``object: "embedding"`` items)."""
    results = answer.get("results")
    if isinstance(results, list):
        found = [_result(item, "relevance_score") for item in results]
    else:
        data = answer.get("data")
        if not isinstance(data, list) or not data:
            return None
        if not all(isinstance(item, dict) and item.get("object") == "score" for item in data):
            return None
        found = [_result(item, "score") for item in data]
    return [item for item in found if item is not None]
