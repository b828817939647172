"""Embeddings through the trust layer: identity, model policy, limits and audit as for
chat. The audit seals the input text and keeps counts and dimensions in clear; no
vector is stored anywhere, sealed or not."""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from appliance.audit.access import Actor, reveal
from appliance.audit.records import AuditEvent, Outcome
from appliance.audit.store import SqlAuditStore
from appliance.audit.wiring import open_audit_log
from appliance.config import LimitsSettings
from appliance.db import create_db_engine, upgrade_database
from appliance.gateway import create_app
from appliance.identity.apikeys import ApiKeyService
from appliance.keys.deployment import DeploymentSecrets
from tests.integration.conftest import FAKE_MODELS, PEPPER, GatewayHarness, make_settings
from tests.support.fake_vllm import (
    EMBED_DIMENSION,
    EMBED_MODEL,
    SECRET,
    FakeState,
    fake_embedding,
)
from tests.support.requests import auth

EMBEDDINGS = "/v1/embeddings"
AUDITOR = Actor(subject="cli:test", username="test")
CANARY = "canary-embedding-input-7d41"
MAX_INPUTS = 4


@pytest.fixture
def harness(tmp_path: Path, fake_vllm: tuple[str, FakeState]) -> GatewayHarness:
    """The integration harness with an embedding model and a small batch limit."""
    url, state = fake_vllm
    upstreams = [{"model": name, "url": url} for name in [*FAKE_MODELS, EMBED_MODEL]]
    settings = make_settings(
        tmp_path, url, max_body_bytes=4096, max_embedding_inputs=MAX_INPUTS, upstreams=upstreams
    )
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


def embed(client: TestClient, key: str, **body: Any) -> Any:
    return client.post(EMBEDDINGS, json={"model": EMBED_MODEL, **body}, headers=auth(key))


def sealed(harness: GatewayHarness, record_id: str) -> dict[str, Any] | None:
    log = open_audit_log(harness.settings, create_db_engine(harness.settings.database_url))
    content: dict[str, Any] | None = reveal(
        log, record_id, actor=AUDITOR, reason="embeddings test"
    ).content
    return content


def raw_store(harness: GatewayHarness) -> bytes:
    path = Path(harness.settings.database_url.removeprefix("sqlite:///"))
    wal = path.with_name(path.name + "-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def test_single_string(client, harness) -> None:
    response = embed(client, harness.user_key, input="The food was delicious")
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["object"] == "list" and answer["model"] == EMBED_MODEL
    (item,) = answer["data"]
    assert item["embedding"] == fake_embedding("The food was delicious")
    assert answer["usage"] == {"prompt_tokens": 4, "total_tokens": 4, "completion_tokens": 0}
    assert harness.fake.requests[-1] == {"model": EMBED_MODEL, "input": "The food was delicious"}


@pytest.mark.parametrize(
    "value",
    [["one", "two words", "three more words"], [1, 2, 3, 4], [[1, 2], [3], [4, 5, 6]]],
    ids=["strings", "token-ids", "token-id-lists"],
)
def test_batches_and_token_ids(client, harness, value: list[Any]) -> None:
    response = embed(client, harness.user_key, input=value)
    assert response.status_code == 200, response.text
    items = value if not isinstance(value[0], int) else [value]
    data = response.json()["data"]
    assert [d["index"] for d in data] == list(range(len(items)))
    assert [d["embedding"] for d in data] == [fake_embedding(item) for item in items]
    tokens = response.json()["usage"]["prompt_tokens"]
    done = harness.records(response.headers["x-request-id"])[-1]
    assert done.prompt_tokens == tokens and done.completion_tokens == 0
    assert done.params["embeddings"] == len(items)


def test_base64_and_dimensions_pass_through(client, harness) -> None:
    response = embed(client, harness.user_key, input="hi", encoding_format="base64", dimensions=4)
    assert response.status_code == 200, response.text
    assert harness.fake.requests[-1]["encoding_format"] == "base64"
    vector = base64.b64decode(response.json()["data"][0]["embedding"])
    assert struct.unpack("<4f", vector) == tuple(fake_embedding("hi")[:4])
    request, done = harness.records(response.headers["x-request-id"])
    assert request.params == {"inputs": 1, "encoding_format": "base64", "dimensions": 4}
    assert done.params == {**request.params, "embeddings": 1, "dimensions": 4}


def test_audit_seals_input_and_stores_no_vector(client, harness) -> None:
    inputs = [f"{CANARY} first", f"{CANARY} second"]
    response = embed(client, harness.user_key, input=inputs)
    assert response.status_code == 200
    request, done = harness.records(response.headers["x-request-id"])
    assert (request.event, done.event) == (AuditEvent.REQUEST, AuditEvent.COMPLETION)
    assert (done.outcome, done.status_code, done.model) == (Outcome.OK, 200, EMBED_MODEL)
    assert request.path == EMBEDDINGS
    assert request.params == {"inputs": 2, "encoding_format": "float"}
    assert done.params == {
        "inputs": 2,
        "encoding_format": "float",
        "embeddings": 2,
        "dimensions": EMBED_DIMENSION,
    }
    assert done.prompt_tokens == 4
    # The input is sealed: not in clear metadata, nor anywhere in the raw database ...
    for record in (request, done):
        assert "canary" not in json.dumps(record.params)
    raw = raw_store(harness)
    assert b"canary" not in raw
    # ... and revealed from the request record's sealed content.
    assert sealed(harness, request.record_id) == {"input": inputs}
    # No vector anywhere: the answer's sealed content holds counts only.
    assert sealed(harness, done.record_id) == {"embeddings": 2, "dimensions": EMBED_DIMENSION}
    for item in inputs:
        fragment = json.dumps(fake_embedding(item))[1:-1].encode()  # "0.1, -0.2, ..."
        assert fragment not in raw
        assert fragment.decode() not in json.dumps([request.params, done.params])


def test_limits_charge_input_tokens_and_settle_on_usage(harness) -> None:
    # "aaaaaaaa " * 10 is 90 characters: 22 tokens reserved, 10 used (one per word).
    # With settlement three fit in 50 tokens; a fourth 22-token reservation does not.
    # (Reserving an answer cap as for chat would refuse the first.)
    limits = LimitsSettings(roles={"appliance-user": {"tpm": 50}})  # type: ignore[dict-item]
    settings = harness.settings.model_copy(update={"limits": limits})
    with TestClient(create_app(settings, secrets=harness.secrets)) as client:
        codes = [
            embed(client, harness.user_key, input="aaaaaaaa " * 10).status_code for _ in range(4)
        ]
        refused = embed(client, harness.user_key, input="aaaaaaaa " * 10)
    assert codes[:3] == [200, 200, 200]
    assert codes[3] == 429 and refused.status_code == 429
    assert "tokens per minute" in refused.json()["error"]["message"]


def test_model_policy_applies(client, harness) -> None:
    chat_only = harness.key(models=["fake-model"])
    response = embed(client, chat_only, input="hi")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "model_not_allowed"
    (denied,) = harness.records(response.headers["x-request-id"])
    assert (denied.event, denied.outcome) == (AuditEvent.DENIED, Outcome.DENIED)
    missing = client.post(
        EMBEDDINGS, json={"model": "nope", "input": "hi"}, headers=auth(harness.user_key)
    )
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "model_not_found"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"input": ""}, "must not be empty"),
        ({"input": []}, "must not be empty"),
        ({"input": ["a", ""]}, "empty string"),
        ({"input": [[1], []]}, "token-id list"),
        ({"input": [1, -2]}, "non-negative"),
        ({"input": [True, 1]}, "input must be"),
        ({"input": {"text": "hi"}}, "input must be"),
        ({"input": ["a", 1]}, "input must be"),
        ({"input": ["x"] * (MAX_INPUTS + 1)}, f"limit is {MAX_INPUTS}"),
        ({"input": "hi", "encoding_format": "int8"}, "encoding_format"),
        ({"input": "hi", "dimensions": 0}, "dimensions"),
        ({"input": "hi", "stream": True}, "not streamed"),
        ({}, "input"),
    ],
    ids=[
        "empty-string", "empty-list", "empty-item", "empty-ids", "negative-id", "bool",
        "object", "mixed", "oversized", "format", "dimensions", "stream", "missing",
    ],
)  # fmt: skip
def test_bad_input_is_an_openai_400_and_never_reaches_the_engine(
    client, harness, body: dict[str, Any], fragment: str
) -> None:
    sent = len(harness.fake.requests)
    response = embed(client, harness.user_key, **body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_request")
    assert fragment in error["message"]
    assert error["param"] in ("input", "encoding_format", "dimensions", "stream")
    assert len(harness.fake.requests) == sent
    (denied,) = harness.records(response.headers["x-request-id"])
    assert (denied.event, denied.status_code) == (AuditEvent.DENIED, 400)


def test_embeddings_from_a_chat_model_is_a_400_and_audited(client, harness) -> None:
    response = client.post(
        EMBEDDINGS,
        json={"model": "fake-model", "input": CANARY},
        headers=auth(harness.user_key),
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("invalid_request", "model")
    assert error["message"] == (
        "model fake-model does not serve /v1/embeddings (the engine answered: Not Found)"
    )
    request, done = harness.records(response.headers["x-request-id"])
    assert request.event is AuditEvent.REQUEST
    assert (done.event, done.outcome, done.status_code) == (
        AuditEvent.COMPLETION, Outcome.INVALID, 400,
    )  # fmt: skip
    assert sealed(harness, request.record_id) == {"input": CANARY}
    # The reverse: a chat request to the embedding model.
    chat = client.post(
        "/v1/chat/completions",
        json={"model": EMBED_MODEL, "messages": [{"role": "user", "content": "hi"}]},
        headers=auth(harness.user_key),
    )
    assert chat.status_code == 400
    assert "does not serve /v1/chat/completions" in chat.json()["error"]["message"]
    # The engine carries on.
    assert embed(client, harness.user_key, input="hi").status_code == 200
