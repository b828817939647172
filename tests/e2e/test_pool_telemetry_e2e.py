"""The real engine behind the replica pool, with dead replicas beside it: every request
fails over to the engine, and the spans of the run carry GenAI attributes but no prompt
or answer text."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from appliance.audit.sink import MemoryAuditSink
from appliance.config import Settings
from appliance.db import create_db_engine, upgrade_database
from appliance.gateway import create_app
from appliance.gateway.services import utc_now
from appliance.identity.apikeys import ApiKeyService
from appliance.keys.deployment import deployment_secrets
from tests.e2e.conftest import SERVED_NAME, RunningAppliance
from tests.support.servers import free_port

pytestmark = pytest.mark.e2e

PROMPT = "What is the capital of France?"


def test_failover_to_the_real_engine_and_no_content_in_spans(
    appliance: RunningAppliance, tmp_path: Path
) -> None:
    dead = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]
    settings = Settings(
        data_dir=tmp_path / "data",
        database={"url": f"sqlite:///{tmp_path / 'keys.db'}"},
        engine={"enabled": False},
        gateway={
            "upstreams": [{"model": SERVED_NAME, "url": url}
                          for url in (dead[0], appliance.engine_url, dead[1])],
            "routing": {"health_interval_s": 0,
                        "aliases": {"dev": SERVED_NAME}},
        },
        limits={"roles": {"appliance-user": {"rpm": 100, "tpm": 100000}}},
    )  # fmt: skip
    # The running appliance's engine secret; a key store of our own.
    engine_secrets = deployment_secrets(Settings(data_dir=appliance.data_dir))
    database = create_db_engine(settings.database_url)
    upgrade_database(database)
    key = (
        ApiKeyService(database, engine_secrets.api_key_pepper)
        .create(name="e2e", owner="tester", roles=["appliance-user"], models=None, now=utc_now())
        .secret
    )
    exporter = InMemorySpanExporter()
    app = create_app(
        settings, secrets=engine_secrets, audit_sink=MemoryAuditSink(), span_exporter=exporter
    )
    body = {"model": "dev", "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": 12, "temperature": 0}  # fmt: skip
    answers = []
    with TestClient(app) as client:
        for stream in (False, True, False, True):
            response = client.post(
                "/v1/chat/completions",
                json={**body, "stream": stream},
                headers={"Authorization": f"Bearer {key}"},
            )
            assert response.status_code == 200, response.text
            answers.append(response.text)
        metrics = client.get("/metrics").text
    assert all("Paris" in answer for answer in answers)
    spans = [s for s in exporter.get_finished_spans() if s.name == f"chat {SERVED_NAME}"]
    assert len(spans) == 4
    for span in spans:
        attrs = dict(span.attributes or {})
        assert attrs["gen_ai.request.model"] == SERVED_NAME
        assert attrs["gen_ai.usage.input_tokens"] > 0
        assert attrs["gen_ai.usage.output_tokens"] > 0
    blob = "\n".join([metrics, *(s.to_json() for s in exporter.get_finished_spans())])
    assert PROMPT not in blob and "Paris" not in blob
    assert 'outcome="unreachable"' in metrics  # the dead replicas were tried and skipped
