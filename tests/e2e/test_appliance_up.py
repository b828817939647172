"""The quickstart, for real: `appliance up`, then the official openai client asks the
dev model through the gateway, and the audit log has the request."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from appliance.audit.records import AuditEvent, Outcome
from appliance.audit.store import SqlAuditStore
from appliance.db import create_db_engine
from tests.e2e.conftest import EMBED_NAME, SERVED_NAME, RunningAppliance

pytestmark = pytest.mark.e2e

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def audit_records(appliance: RunningAppliance, request_id: str) -> list:  # type: ignore[type-arg]
    engine = create_db_engine(appliance.database_url)
    try:
        return SqlAuditStore(engine).by_request(request_id)
    finally:
        engine.dispose()


def client(appliance: RunningAppliance) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{appliance.url}/v1", api_key=appliance.admin_key)


def test_openai_client_gets_paris(appliance: RunningAppliance) -> None:
    raw = client(appliance).chat.completions.with_raw_response.create(
        model=SERVED_NAME, messages=QUESTION, temperature=0, max_tokens=30
    )
    completion = raw.parse()
    assert "Paris" in (completion.choices[0].message.content or "")
    records = audit_records(appliance, raw.headers["x-request-id"])
    assert [r.event for r in records] == [AuditEvent.REQUEST, AuditEvent.COMPLETION]
    done = records[-1]
    assert done.outcome is Outcome.OK
    assert done.model == SERVED_NAME
    assert done.username == "admin"
    assert done.auth_method == "api_key"
    assert done.subject is not None and done.subject.startswith("apikey:")
    assert completion.usage is not None
    assert done.prompt_tokens == completion.usage.prompt_tokens
    assert done.completion_tokens == completion.usage.completion_tokens


def test_openai_client_streams_paris(appliance: RunningAppliance, wait_until) -> None:
    with client(appliance).chat.completions.with_streaming_response.create(
        model=SERVED_NAME, messages=QUESTION, temperature=0, max_tokens=30, stream=True
    ) as response:
        request_id = response.headers["x-request-id"]
        chunks = list(response.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text
    # The client did not ask for usage, so it got no usage chunk ...
    assert all(c.usage is None for c in chunks)
    # ... but the audit record has the token counts the gateway asked the engine for.
    # It is written as the stream closes, which may be just after the client's last read.
    assert wait_until(lambda: len(audit_records(appliance, request_id)) == 2)
    done = audit_records(appliance, request_id)[-1]
    assert done.outcome is Outcome.OK
    assert done.prompt_tokens and done.prompt_tokens > 0
    assert done.completion_tokens and done.completion_tokens > 0


def test_models_and_readiness(appliance: RunningAppliance) -> None:
    models = [m.id for m in client(appliance).models.list()]
    # The chat engine and the embedding engine (adapters are listed as <model>:<name>).
    assert [m for m in models if ":" not in m] == [SERVED_NAME, EMBED_NAME]
    ready = httpx.get(f"{appliance.url}/readyz").json()
    assert ready["status"] == "ready"


def test_wrong_key_is_refused_through_the_real_stack(appliance: RunningAppliance) -> None:
    bad = openai.OpenAI(base_url=f"{appliance.url}/v1", api_key="sk-appl-" + "x" * 43)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model=SERVED_NAME, messages=QUESTION, max_tokens=5)


def test_engine_itself_requires_the_shared_secret(appliance: RunningAppliance) -> None:
    response = httpx.post(
        f"{appliance.engine_url}/v1/chat/completions",
        json={"model": SERVED_NAME, "messages": QUESTION, "max_tokens": 5},
        timeout=30,
    )
    assert response.status_code == 401


def test_engine_runs_offline(appliance: RunningAppliance) -> None:
    environ = Path(f"/proc/{appliance.engine_pid}/environ").read_bytes().split(b"\0")
    for name in (b"HF_HUB_OFFLINE", b"TRANSFORMERS_OFFLINE", b"VLLM_NO_USAGE_STATS",
                 b"DO_NOT_TRACK"):  # fmt: skip
        assert name + b"=1" in environ
