"""A reasoning model's thinking text (``reasoning_content``, or vLLM 0.32's
``reasoning``) reaches the client unchanged and is sealed in the completion record,
streamed and not; the clear metadata says only that there was reasoning, and the text
is nowhere in the database outside the encrypted envelope."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import pytest
from fastapi.testclient import TestClient

from appliance.audit.access import Actor, reveal
from appliance.audit.records import AuditEvent, Outcome
from appliance.audit.wiring import open_audit_log
from appliance.db import create_db_engine
from appliance.gateway import create_app
from tests.integration.conftest import GatewayHarness, make_settings
from tests.support.fake_vllm import REASONING_FIELD, REASONING_TOKENS, TOKENS, FakeState
from tests.support.requests import CHAT, auth, chat_body

AUDITOR = Actor(subject="cli:test", username="test")
REASONING = "".join(REASONING_TOKENS)


@pytest.fixture
def reasoning_client(
    tmp_path: Path, harness: GatewayHarness, fake_vllm: tuple[str, FakeState]
) -> Iterator[TestClient]:
    url, _state = fake_vllm
    upstreams = [{"model": name, "url": url} for name in REASONING_FIELD]
    settings = make_settings(tmp_path, url, upstreams=upstreams)
    settings = settings.model_copy(update={"database": harness.settings.database})
    with TestClient(create_app(settings, secrets=harness.secrets)) as client:
        yield client


def _sealed(harness: GatewayHarness, record_id: str) -> dict[str, Any] | None:
    log = open_audit_log(harness.settings, create_db_engine(harness.settings.database_url))
    content: dict[str, Any] | None = reveal(
        log, record_id, actor=AUDITOR, reason="reasoning test"
    ).content
    return content


def _reasoning_of(answer: bytes, field: str, *, stream: bool) -> str:
    if not stream:
        return str(json.loads(answer)["choices"][0]["message"][field])
    pieces = []
    for line in answer.decode().splitlines():
        if line.startswith("data: {"):
            for choice in json.loads(line[6:]).get("choices", []):
                pieces.append(choice["delta"].get(field) or "")
    return "".join(pieces)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("model", sorted(REASONING_FIELD))
def test_reasoning_is_sealed_and_only_flagged_in_the_clear(
    reasoning_client: TestClient, harness: GatewayHarness, model: str, stream: bool
) -> None:
    body = chat_body(model, stream=stream)
    response = reasoning_client.post(CHAT, json=body, headers=auth(harness.user_key))
    assert response.status_code == 200, response.text
    # The client gets the engine's reasoning as the engine sent it (the chat UI reads it).
    assert _reasoning_of(response.content, REASONING_FIELD[model], stream=stream) == REASONING
    request, done = harness.records(response.headers["x-request-id"])
    assert (request.event, done.event, done.outcome) == (
        AuditEvent.REQUEST, AuditEvent.COMPLETION, Outcome.OK,
    )  # fmt: skip
    assert done.params == (request.params or {}) | {"reasoning": True, "answer_commitment": ANY}
    assert _sealed(harness, done.record_id) == {
        "response": ["".join(TOKENS)],
        "reasoning": [REASONING],
    }
    # Only the flag is clear: no reasoning text in any record's metadata, nor in the
    # database file at all (it lives inside the envelope, encrypted).
    for record in (request, done):
        assert "France" not in json.dumps(record.params)
    raw = Path(harness.settings.database_url.removeprefix("sqlite:///")).read_bytes()
    for piece in REASONING_TOKENS:
        assert piece.strip().encode() not in raw


def test_an_answer_without_reasoning_has_no_flag(
    client: TestClient, harness: GatewayHarness
) -> None:
    response = client.post(CHAT, json=chat_body(), headers=auth(harness.user_key))
    done = harness.records(response.headers["x-request-id"])[-1]
    assert "reasoning" not in (done.params or {})
    assert "reasoning" not in (_sealed(harness, done.record_id) or {})
