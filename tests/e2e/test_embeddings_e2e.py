"""Embeddings from a real engine: `appliance up` starts the dev model's weights a second
time under vLLM's pooling runner (``--convert embed``, last-token pooling, normalised),
and the vectors the gateway hands back equal the ones `transformers` computes from the
same local weights. Bad input is an OpenAI-shaped 4xx and leaves the engine running."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from appliance.audit.records import AuditEvent, Outcome
from appliance.audit.store import SqlAuditStore
from appliance.db import create_db_engine
from tests.e2e.conftest import (
    DEV_MODEL_DIR,
    EMBED_MAX_MODEL_LEN,
    EMBED_NAME,
    SERVED_NAME,
    RunningAppliance,
)

pytestmark = pytest.mark.e2e

TEXTS = [
    "The appliance keeps every document on the premises.",
    "Paris is the capital of France.",
    "Embeddings turn text into vectors.",
]
TOLERANCE = 1e-3
HIDDEN_SIZE = 576  # SmolLM2-135M


def records(appliance: RunningAppliance, request_id: str) -> list[Any]:
    engine = create_db_engine(appliance.database_url)
    try:
        return SqlAuditStore(engine).by_request(request_id)
    finally:
        engine.dispose()


def post(appliance: RunningAppliance, path: str, body: dict[str, Any]) -> httpx.Response:
    headers = {"Authorization": f"Bearer {appliance.admin_key}"}
    return httpx.post(f"{appliance.url}{path}", json=body, headers=headers, timeout=300)


@pytest.fixture(scope="module")
def reference() -> Iterator[tuple[list[list[float]], list[int]]]:
    """Last-token pooling of the final (normed) hidden state, L2-normalised, computed
    with transformers from the same weights, one input at a time (no padding); and the
    token count of each input as the tokenizer counts it (special tokens included, as
    vLLM tokenizes)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(DEV_MODEL_DIR)
    model = AutoModel.from_pretrained(DEV_MODEL_DIR, dtype=torch.float32).eval()
    vectors, counts = [], []
    with torch.inference_mode():
        for text in TEXTS:
            ids = tokenizer(text, return_tensors="pt")
            hidden = model(**ids).last_hidden_state[0, -1]
            vectors.append(torch.nn.functional.normalize(hidden, dim=0).tolist())
            counts.append(int(ids["input_ids"].shape[1]))
    yield vectors, counts
    del model


def test_models_list_shows_both_kinds(appliance: RunningAppliance) -> None:
    listed = httpx.get(
        f"{appliance.url}/v1/models",
        headers={"Authorization": f"Bearer {appliance.admin_key}"},
        timeout=30,
    ).json()["data"]
    kinds = {entry["id"]: entry["kind"] for entry in listed if ":" not in entry["id"]}
    assert kinds == {SERVED_NAME: "chat", EMBED_NAME: "embedding"}  # adapters: <model>:<name>


def test_vectors_equal_the_transformers_reference(
    appliance: RunningAppliance, reference: tuple[list[list[float]], list[int]]
) -> None:
    expected, counts = reference
    client = openai.OpenAI(base_url=f"{appliance.url}/v1", api_key=appliance.admin_key)
    raw = client.embeddings.with_raw_response.create(
        model=EMBED_NAME, input=TEXTS, encoding_format="float"
    )
    answer = raw.parse()
    assert answer.model == EMBED_NAME
    assert [item.index for item in answer.data] == [0, 1, 2]
    for item, want in zip(answer.data, expected, strict=True):
        got = item.embedding
        assert len(got) == HIDDEN_SIZE
        assert math.isclose(math.fsum(x * x for x in got), 1.0, abs_tol=1e-4)  # normalised
        worst = max(abs(a - b) for a, b in zip(got, want, strict=True))
        assert worst < TOLERANCE, f"largest difference {worst}"
    assert answer.usage.prompt_tokens == sum(counts)
    assert answer.usage.total_tokens == sum(counts)
    # The audit: counts and dimensions in clear, never a vector.
    request, done = records(appliance, raw.headers["x-request-id"])
    assert (request.event, done.event) == (AuditEvent.REQUEST, AuditEvent.COMPLETION)
    assert (done.outcome, done.model) == (Outcome.OK, EMBED_NAME)
    assert done.prompt_tokens == sum(counts) and done.completion_tokens == 0
    assert done.params == {
        "inputs": 3, "encoding_format": "float", "embeddings": 3, "dimensions": HIDDEN_SIZE,
    }  # fmt: skip
    assert request.params == {"inputs": 3, "encoding_format": "float"}
    # No vector anywhere in the audit database, sealed or not.
    database = appliance.data_dir / "appliance.db"
    wal = database.with_name(database.name + "-wal")
    raw = database.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    for item in answer.data:
        assert repr(item.embedding[0]).encode() not in raw
        assert ", ".join(repr(x) for x in item.embedding[:2]).encode() not in raw


def test_embedding_request_to_the_chat_model_is_a_400(appliance: RunningAppliance) -> None:
    response = post(appliance, "/v1/embeddings", {"model": SERVED_NAME, "input": TEXTS[0]})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", "model")
    assert f"model {SERVED_NAME} does not serve /v1/embeddings" in error["message"]
    (_request, done) = records(appliance, response.headers["x-request-id"])
    assert (done.outcome, done.status_code) == (Outcome.INVALID, 400)


def test_chat_request_to_the_embedding_model_is_a_400(appliance: RunningAppliance) -> None:
    body = {"model": EMBED_NAME, "messages": [{"role": "user", "content": "hi"}]}
    response = post(appliance, "/v1/chat/completions", body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "model"
    assert f"model {EMBED_NAME} does not serve /v1/chat/completions" in error["message"]


def test_oversized_batch_is_a_400_before_the_engine(appliance: RunningAppliance) -> None:
    response = post(appliance, "/v1/embeddings", {"model": EMBED_NAME, "input": ["a"] * 2049})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", "input")
    assert "limit is 2048" in error["message"]
    (denied,) = records(appliance, response.headers["x-request-id"])
    assert (denied.event, denied.status_code) == (AuditEvent.DENIED, 400)


def test_input_longer_than_the_engine_takes_is_a_400(appliance: RunningAppliance) -> None:
    long_text = "word " * (EMBED_MAX_MODEL_LEN * 2)
    response = post(appliance, "/v1/embeddings", {"model": EMBED_NAME, "input": long_text})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert str(EMBED_MAX_MODEL_LEN) in error["message"]


def test_engines_survive_the_bad_requests(appliance: RunningAppliance) -> None:
    os.kill(appliance.embed_pid, 0)  # still there (raises if not)
    good = post(appliance, "/v1/embeddings", {"model": EMBED_NAME, "input": "still here"})
    assert good.status_code == 200, good.text
    assert len(good.json()["data"][0]["embedding"]) == HIDDEN_SIZE
    engine = httpx.post(
        f"{appliance.embed_url}/v1/embeddings",
        json={"model": EMBED_NAME, "input": "no secret"},
        timeout=30,
    )
    assert engine.status_code == 401  # the engine itself wants the shared secret
