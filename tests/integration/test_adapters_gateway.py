"""Per-team adapters through the gateway (fake engine): ``<model>:<adapter>`` goes to
its model's engine under the adapter's name, only for the adapter's teams; /v1/models
lists it to them alone; the audit records name the adapter and its manifest hash."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from openai.types import Model

from appliance.adapters import import_adapter
from appliance.audit.records import AuditEvent, Outcome
from appliance.gateway import create_app
from appliance.gateway.services import utc_now
from tests.integration.conftest import GatewayHarness
from tests.support.fake_adapters import write_adapter, write_base
from tests.support.requests import auth

LEGAL = "fake-model:legal-v1"
CHAT = "/v1/chat/completions"


@pytest.fixture
def client(harness: GatewayHarness, tmp_path) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    """The gateway over a store where fake-model has adapter legal-v1 (teams legal and
    compliance) and fake-slow has tax-v1 (team tax)."""
    store = harness.settings.model_store
    for base, name, teams in (("fake-model", "legal-v1", ["legal", "compliance"]),
                              ("fake-slow", "tax-v1", ["tax"])):  # fmt: skip
        write_base(store, base)
        source = write_adapter(tmp_path / f"src-{name}")
        import_adapter(source, store, name, base=base, teams=teams, trust_source=True)
    with TestClient(create_app(harness.settings, secrets=harness.secrets)) as test_client:
        yield test_client


def team_key(harness: GatewayHarness, team: str | None) -> str:
    return harness.keys.create(
        name="t", owner="o", roles=["appliance-user"], models=None, now=utc_now(), team=team
    ).secret


def chat(model: str, **extra: object) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}


def test_the_adapter_goes_to_its_models_engine_under_its_own_name(
    client: TestClient, harness: GatewayHarness
) -> None:
    response = client.post(CHAT, json=chat(LEGAL), headers=auth(team_key(harness, "legal")))
    assert response.status_code == 200, response.text
    assert harness.fake.requests[-1]["model"] == LEGAL  # vLLM serves it under this name
    request, done = harness.records(response.headers["x-request-id"])
    adapter_sha = harness.settings.model_store / "adapters/fake-model/legal-v1/MANIFEST.sha256"
    expected = {
        "adapter": "legal-v1", "adapter_base": "fake-model",
        "adapter_manifest_sha256": hashlib.sha256(adapter_sha.read_bytes()).hexdigest(),
    }  # fmt: skip
    for record in (request, done):
        assert record.model == LEGAL and record.team == "legal"
        assert record.params is not None and expected.items() <= record.params.items()
    assert (request.event, done.event, done.outcome) == (
        AuditEvent.REQUEST, AuditEvent.COMPLETION, Outcome.OK,
    )  # fmt: skip


def test_streamed_answers_and_group_teams_work_too(
    client: TestClient, harness: GatewayHarness
) -> None:
    key = team_key(harness, "compliance")
    with client.stream("POST", CHAT, json=chat(LEGAL, stream=True), headers=auth(key)) as answer:
        assert answer.status_code == 200
        body = "".join(answer.iter_text())
    assert "[DONE]" in body
    assert harness.fake.requests[-1]["model"] == LEGAL


def test_another_team_gets_403_naming_the_reason(
    client: TestClient, harness: GatewayHarness
) -> None:
    before = len(harness.fake.requests)
    for team, reason in (("research", "not granted to your team (research)"),
                         (None, "this credential has no team")):  # fmt: skip
        response = client.post(CHAT, json=chat(LEGAL), headers=auth(team_key(harness, team)))
        assert response.status_code == 403
        error = response.json()["error"]
        assert error["code"] == "adapter_not_allowed" and reason in error["message"]
        assert LEGAL in error["message"] and "compliance" not in error["message"]
        (denied,) = harness.records(response.headers["x-request-id"])
        assert denied.outcome is Outcome.DENIED and denied.model == LEGAL
        assert denied.denial_reason is not None and reason in denied.denial_reason
    assert len(harness.fake.requests) == before  # the engine never saw them


def test_unknown_and_mismatched_adapters(client: TestClient, harness: GatewayHarness) -> None:
    key = auth(team_key(harness, "legal"))
    unknown = client.post(CHAT, json=chat("fake-model:nope"), headers=key)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "model_not_found"
    other_base = client.post(CHAT, json=chat("fake-slow:legal-v1"), headers=key)
    assert other_base.status_code == 400
    error = other_base.json()["error"]
    assert (error["code"], error["param"]) == ("adapter_base_mismatch", "model")
    assert "'fake-model'" in error["message"]
    absent_base = client.post(CHAT, json=chat("no-such-model:legal-v1"), headers=key)
    assert absent_base.status_code == 404
    for response in (unknown, other_base, absent_base):
        (record,) = harness.records(response.headers["x-request-id"])
        assert record.status_code == response.status_code


def test_model_policy_still_applies_to_the_base(
    client: TestClient, harness: GatewayHarness
) -> None:
    restricted = harness.keys.create(
        name="t", owner="o", roles=["appliance-user"], models=["fake-slow"], now=utc_now(),
        team="legal",
    ).secret  # fmt: skip
    response = client.post(CHAT, json=chat(LEGAL), headers=auth(restricted))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "model_not_allowed"


def test_models_lists_adapters_to_their_teams_only(
    client: TestClient, harness: GatewayHarness
) -> None:
    def listed(team: str | None) -> dict[str, dict[str, object]]:
        answer = client.get("/v1/models", headers=auth(team_key(harness, team)))
        return {entry["id"]: entry for entry in answer.json()["data"]}

    legal, tax, nobody = listed("legal"), listed("tax"), listed(None)
    assert LEGAL in legal and "fake-slow:tax-v1" not in legal
    assert "fake-slow:tax-v1" in tax and LEGAL not in tax
    assert not [name for name in nobody if ":" in name]
    assert set(legal) - {LEGAL} == set(nobody) == set(tax) - {"fake-slow:tax-v1"}
    entry = legal[LEGAL]
    assert (entry["parent"], entry["kind"], entry["owned_by"]) == (
        "fake-model",
        "chat",
        "appliance",
    )
    Model.model_validate(entry, strict=True)


def test_the_responses_api_takes_adapters(client: TestClient, harness: GatewayHarness) -> None:
    response = client.post(
        "/v1/responses", json={"model": LEGAL, "input": "hi"},
        headers=auth(team_key(harness, "legal")),
    )  # fmt: skip
    assert response.status_code == 200, response.text
    assert harness.fake.requests[-1]["model"] == LEGAL
    done = harness.records(response.headers["x-request-id"])[-1]
    assert done.params is not None and done.params["adapter"] == "legal-v1"
    assert json.loads(response.text)["model"]


def test_an_admin_gives_a_key_its_team(client: TestClient, harness: GatewayHarness) -> None:
    admin = auth(harness.key(roles=["appliance-admin", "appliance-user"]))
    made = client.post(
        "/admin/api-keys", json={"name": "bot", "owner": "alice", "team": "legal"}, headers=admin
    )
    assert made.status_code == 201, made.text
    assert made.json()["team"] == "legal"
    answer = client.post(CHAT, json=chat(LEGAL), headers=auth(made.json()["api_key"]))
    assert answer.status_code == 200
    bad = client.post("/admin/api-keys", json={"name": "b", "owner": "o", "team": " x"},
                      headers=admin)  # fmt: skip
    assert bad.status_code == 400
