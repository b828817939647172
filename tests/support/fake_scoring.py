"""``POST /v1/rerank`` and ``POST /v1/score`` of the fake vLLM server, shaped like
vLLM 0.32's (``RerankResponse``, ``ScoreResponse``).

Only the embedding model (``fake-embed``) serves them, as only a pooling model mounts
them in vLLM; any other model meets FastAPI's bare ``404 {"detail": "Not Found"}``.
Scores are deterministic: :func:`fake_score` is the share of a document's words that
occur in the query (case and punctuation ignored), so a test knows which document ranks
first. Tokens: one per word of every query and document.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

if TYPE_CHECKING:
    from tests.support.fake_vllm import FakeState

__all__ = ["fake_score", "scoring_routes"]

_NO_ROUTE = {"detail": "Not Found"}


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def fake_score(query: str, document: str) -> float:
    """The fake's relevance of ``document`` to ``query``, in [0, 1]."""
    words = _words(document)
    if not words:
        return 0.0
    return sum(word in set(_words(query)) for word in words) / len(words)


def _tokens(*texts: str) -> int:
    return sum(max(1, len(text.split())) for text in texts)


def _rerank(payload: dict[str, Any]) -> dict[str, Any]:
    query, documents = payload["query"], payload["documents"]
    results = [
        {"index": index, "document": {"text": document, "multi_modal": None},
         "relevance_score": fake_score(query, document)}
        for index, document in enumerate(documents)
    ]  # fmt: skip
    results.sort(key=lambda item: -item["relevance_score"])
    top_n = payload.get("top_n") or len(results)
    tokens = _tokens(query, *documents)
    return {
        "id": "rerank-fake",
        "model": payload["model"],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        "results": results[:top_n],
    }


def _score(payload: dict[str, Any]) -> dict[str, Any]:
    queries, documents = payload["queries"], payload["documents"]
    if isinstance(queries, str):
        queries = [queries] * len(documents)
    data = [
        {"index": index, "object": "score", "score": fake_score(query, document)}
        for index, (query, document) in enumerate(zip(queries, documents, strict=True))
    ]
    tokens = _tokens(*queries, *documents)
    return {
        "id": "score-fake",
        "object": "list",
        "created": 1,
        "model": payload["model"],
        "data": data,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0},
    }


def scoring_routes(state: FakeState, *, secret: str, model: str) -> list[Route]:
    """The two routes, answering ``model`` only."""

    def endpoint(
        answer: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            if request.headers.get("authorization") != f"Bearer {secret}":
                return JSONResponse({"error": {"message": "Unauthorized"}}, status_code=401)
            payload = await request.json()
            state.requests.append(payload)
            state.headers.append(dict(request.headers))
            if payload["model"] != model:
                return JSONResponse(_NO_ROUTE, status_code=404)
            body = json.dumps(answer(payload)).encode()
            state.sent.append(body)
            return Response(body, media_type="application/json")

        return handle

    return [
        Route("/v1/rerank", endpoint(_rerank), methods=["POST"]),
        Route("/v1/score", endpoint(_score), methods=["POST"]),
    ]
