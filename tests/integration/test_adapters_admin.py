"""An admin loads and unloads adapters in the engines (fake engine with vLLM's runtime
LoRA routes): admin only, recorded before the engine call, only verified store
directories; the gateway's catalogue follows (unloaded: 404, loaded: routes)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from appliance.adapters import import_adapter
from appliance.audit.records import AuditEvent, Outcome
from appliance.gateway import create_app
from appliance.gateway.services import utc_now
from tests.integration.conftest import GatewayHarness
from tests.support.fake_adapters import write_adapter, write_base
from tests.support.requests import auth

LEGAL = "fake-model:legal-v1"
CHAT = "/v1/chat/completions"


def _import(store: Path, tmp_path: Path, name: str, teams: list[str]) -> Path:
    source = write_adapter(tmp_path / f"src-{name}")
    return import_adapter(source, store, name, base="fake-model", teams=teams,
                          trust_source=True).adapter.path  # fmt: skip


@pytest.fixture
def client(harness: GatewayHarness, tmp_path: Path) -> Iterator[TestClient]:
    """The gateway over a store where fake-model has legal-v1, which the engine loaded
    at start (as from --lora-modules)."""
    store = harness.settings.model_store
    write_base(store, "fake-model")
    path = _import(store, tmp_path, "legal-v1", ["legal"])
    harness.fake.loras = {LEGAL: str(path.resolve())}
    harness.fake.lora_calls.clear()
    try:
        with TestClient(create_app(harness.settings, secrets=harness.secrets)) as test_client:
            yield test_client
    finally:
        harness.fake.loras = None


def legal_key(harness: GatewayHarness) -> dict[str, str]:
    return auth(harness.keys.create(name="t", owner="o", roles=["appliance-user"],
                                    models=None, now=utc_now(), team="legal").secret)  # fmt: skip


def chat(model: str) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}]}


def test_the_admin_list_shows_each_adapter_and_its_state(
    client: TestClient, harness: GatewayHarness
) -> None:
    admin = auth(harness.key(roles=["appliance-admin"]))
    (view,) = client.get("/admin/adapters", headers=admin).json()["data"]
    manifest = harness.settings.model_store / "adapters/fake-model/legal-v1/MANIFEST.sha256"
    assert view["model"] == LEGAL and view["base"] == "fake-model" and view["rank"] == 8
    assert view["teams"] == ["legal"] and view["loaded"] is True
    assert (view["loaded_on"], view["replicas"]) == (1, 1)
    assert view["manifest_sha256"] == hashlib.sha256(manifest.read_bytes()).hexdigest()


def test_unload_then_load_audited_and_followed_by_the_gateway(
    client: TestClient, harness: GatewayHarness
) -> None:
    admin = auth(harness.key(roles=["appliance-admin"]))
    key = legal_key(harness)
    assert client.post(CHAT, json=chat(LEGAL), headers=key).status_code == 200

    unloaded = client.post(f"/admin/adapters/{LEGAL}/unload", headers=admin)
    assert unloaded.status_code == 200, unloaded.text
    assert unloaded.json()["loaded"] is False and LEGAL not in (harness.fake.loras or {})
    assert harness.fake.lora_calls[-1] == ("unload", {"lora_name": LEGAL})
    (record,) = harness.records(unloaded.headers["x-request-id"])
    assert record.event == AuditEvent.ADAPTER_UNLOAD and record.outcome is Outcome.OK
    assert record.params is not None and record.params["adapter"] == "legal-v1"
    assert record.params["adapter_manifest_sha256"] == unloaded.json()["manifest_sha256"]

    before = len(harness.fake.requests)
    refused = client.post(CHAT, json=chat(LEGAL), headers=key)
    assert refused.status_code == 404
    error = refused.json()["error"]
    assert error["code"] == "adapter_not_loaded" and "not loaded" in error["message"]
    assert len(harness.fake.requests) == before
    models = client.get("/v1/models", headers=key).json()["data"]
    assert LEGAL not in {m["id"] for m in models}

    loaded = client.post(f"/admin/adapters/{LEGAL}/load", headers=admin)
    assert loaded.status_code == 200, loaded.text
    assert loaded.json()["loaded"] is True
    action, body = harness.fake.lora_calls[-1]
    store = harness.settings.model_store.resolve()
    assert action == "load" and body["lora_name"] == LEGAL
    assert body["lora_path"] == str(store / "adapters/fake-model/legal-v1")  # never a hub
    (record,) = harness.records(loaded.headers["x-request-id"])
    assert record.event == AuditEvent.ADAPTER_LOAD and record.outcome is Outcome.OK
    assert client.post(CHAT, json=chat(LEGAL), headers=key).status_code == 200
    # Loading an adapter the engine has is no error (vLLM's 400 "already loaded").
    again = client.post(f"/admin/adapters/{LEGAL}/load", headers=admin)
    assert again.status_code == 200 and again.json()["loaded"] is True


def test_an_adapter_imported_after_start_can_be_loaded(
    client: TestClient, harness: GatewayHarness, tmp_path: Path
) -> None:
    admin = auth(harness.key(roles=["appliance-admin"]))
    _import(harness.settings.model_store, tmp_path, "late-v1", ["legal"])
    late = "fake-model:late-v1"
    listed = {v["model"]: v for v in client.get("/admin/adapters", headers=admin).json()["data"]}
    assert listed[late]["loaded"] is False
    refused = client.post(CHAT, json=chat(late), headers=legal_key(harness))
    assert refused.json()["error"]["code"] == "adapter_not_loaded"
    assert client.post(f"/admin/adapters/{late}/load", headers=admin).status_code == 200
    answer = client.post(CHAT, json=chat(late), headers=legal_key(harness))
    assert answer.status_code == 200 and harness.fake.requests[-1]["model"] == late


def test_only_admins_and_only_known_untampered_adapters(
    client: TestClient, harness: GatewayHarness
) -> None:
    for roles in (["appliance-user"], ["appliance-auditor"]):
        other = auth(harness.key(roles=roles))
        for method, path in (("GET", "/admin/adapters"),
                             ("POST", f"/admin/adapters/{LEGAL}/unload"),
                             ("POST", f"/admin/adapters/{LEGAL}/load")):  # fmt: skip
            response = client.request(method, path, headers=other)
            assert response.status_code == 403
            assert response.json()["error"]["code"] == "role_required"
    assert harness.fake.lora_calls == []

    admin = auth(harness.key(roles=["appliance-admin"]))
    unknown = client.post("/admin/adapters/fake-model:nope/load", headers=admin)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "adapter_not_found"

    directory = harness.settings.model_store / "adapters/fake-model/legal-v1"
    metadata = directory / "appliance-adapter.json"
    changed = json.loads(metadata.read_text())
    changed["teams"] = ["legal", "research"]  # a team granted by hand
    metadata.write_text(json.dumps(changed))
    harness.fake.loras = {}
    tampered = client.post(f"/admin/adapters/{LEGAL}/load", headers=admin)
    assert tampered.status_code == 400
    error = tampered.json()["error"]
    assert error["code"] == "adapter_verification_failed" and error["param"] == "model"
    assert harness.fake.lora_calls == [] and harness.fake.loras == {}
    (record,) = harness.records(tampered.headers["x-request-id"])
    assert record.event == AuditEvent.ADAPTER_LOAD and record.outcome is Outcome.DENIED
    assert record.denial_reason is not None
    # The gateway re-checks changed files: the hand-granted team gets nothing from it.
    (view,) = client.get("/admin/adapters", headers=admin).json()["data"]
    assert view["verified"] is False
    refused = client.post(CHAT, json=chat(LEGAL), headers=legal_key(harness))
    assert refused.status_code == 404


def test_an_engine_without_runtime_lora_gives_a_clear_502(
    client: TestClient, harness: GatewayHarness
) -> None:
    admin = auth(harness.key(roles=["appliance-admin"]))
    harness.fake.loras = None  # the routes are off
    response = client.post(f"/admin/adapters/{LEGAL}/unload", headers=admin)
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "engine_error" and "LoRA" in error["message"]
    act, failed = harness.records(response.headers["x-request-id"])
    assert act.event == AuditEvent.ADAPTER_UNLOAD  # recorded before the engine call
    assert failed.event == AuditEvent.DENIED and failed.status_code == 502
    # The engine still has it: the gateway keeps routing it.
    assert client.post(CHAT, json=chat(LEGAL), headers=legal_key(harness)).status_code == 200


def test_the_console_usage_splits_by_adapter(client: TestClient, harness: GatewayHarness) -> None:
    key = legal_key(harness)
    for model in (LEGAL, LEGAL, "fake-model"):
        assert client.post(CHAT, json=chat(model), headers=key).status_code == 200
    auditor = auth(harness.key(roles=["appliance-auditor"]))
    usage = client.get("/ui/api/audit/usage?days=2", headers=auditor)
    assert usage.status_code == 200, usage.text
    body = usage.json()
    assert sum(body["requests_by_adapter"][LEGAL]) == 2
    assert sum(body["requests_by_adapter"]["(no adapter)"]) == 1
    assert sum(body["tokens_by_adapter"][LEGAL]) == 2 * sum(
        body["tokens_by_adapter"]["(no adapter)"]
    )
