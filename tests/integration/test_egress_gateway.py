"""External providers through the gateway (issue #17): a real gateway, a recording fake
provider over HTTPS on loopback, the fake vLLM for the in-house fallback, and the real
sealed audit log. What the provider receives is counted byte for byte."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from appliance.audit.access import Actor, reveal
from appliance.audit.receipts import RECEIPT_HEADER
from appliance.audit.records import AuditEvent, Outcome
from appliance.audit.store import SqlAuditStore
from appliance.audit.verify import verify_log
from appliance.audit.wiring import audit_verifier, open_audit_log
from appliance.config import ClassificationSettings, Settings
from appliance.db import create_db_engine
from appliance.gateway import create_app
from appliance.gateway.services import utc_now
from appliance.settings.egress import ProviderSettings
from tests.integration.conftest import GatewayHarness
from tests.support.connect_proxy import ConnectProxy
from tests.support.fake_provider import KEY, FakeProvider
from tests.support.requests import CHAT, auth

AUDITOR = Actor(subject="cli:test", username="test")
EMAIL = "jane.doe@example.org"
IBAN = "DE89370400440532013000"
PRIVATE_KEY = (
    "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n"
    "-----END PRIVATE KEY-----"
)
COST = "0.006"  # 1000 prompt tokens at 2/M + 500 completion tokens at 8/M (the fake's usage)


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeProvider]:
    with FakeProvider(tmp_path_factory.mktemp("provider-tls")) as fake:
        yield fake


def provider_settings(fake: FakeProvider, key_file: Path, **overrides: Any) -> dict[str, Any]:
    return {
        "name": "frontier",
        "base_url": fake.base_url,
        "credential": {"secret_file": str(key_file)},
        "ca_file": str(fake.ca_file),
        "max_classification": "public",
        "teams": ["research"],
        "models": ["gpt-echo@frontier", "gpt-429@frontier", "gpt-500@frontier"],
        "price_input_per_million": "2",
        "price_output_per_million": "8",
        "currency": "EUR",
        "monthly_budget": {"research": "5"},
        "egress": {"cidrs": ["127.0.0.1/32"]},
        **overrides,
    }


def egress_settings(
    base: Settings, tmp_path: Path, fake: FakeProvider, **overrides: Any
) -> Settings:
    key_file = tmp_path / "frontier.key"
    key_file.write_text(KEY + "\n")
    provider = ProviderSettings.model_validate(provider_settings(fake, key_file, **overrides))
    classification = ClassificationSettings(default="internal", teams={"research": "public"})
    return base.model_copy(
        update={"external_providers": [provider], "classification": classification}
    )


@pytest.fixture
def gateway(
    harness: GatewayHarness, tmp_path: Path, provider: FakeProvider, request: pytest.FixtureRequest
) -> Iterator[TestClient]:
    overrides = getattr(request, "param", {})
    harness.settings = egress_settings(harness.settings, tmp_path, provider, **overrides)
    provider.state.received.clear()
    app = create_app(harness.settings, secrets=harness.secrets)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def team_key(harness: GatewayHarness, team: str = "research") -> dict[str, str]:
    key = harness.keys.create(
        name="t", owner="tester", roles=["appliance-user"], models=None, now=utc_now(), team=team
    ).secret
    return auth(key)


def ask(text: str, model: str = "gpt-echo@frontier", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def sealed(harness: GatewayHarness, record_id: str) -> dict[str, Any]:
    log = open_audit_log(harness.settings, create_db_engine(harness.settings.database_url))
    content = reveal(log, record_id, actor=AUDITOR, reason="egress test").content
    assert content is not None
    return content


def streamed_text(raw: bytes) -> str:
    text = []
    for line in raw.decode().splitlines():
        if line.startswith("data: {"):
            for choice in json.loads(line[6:]).get("choices", []):
                text.append((choice.get("delta") or {}).get("content") or "")
    return "".join(text)


TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_an_ordinary_prompt_leaves_with_the_key_and_nothing_else(
    gateway, harness, provider
) -> None:
    headers = {**team_key(harness), "traceparent": TRACEPARENT, "X-Request-Id": "egress-ordinary"}
    response = gateway.post(CHAT, json=ask("What is the capital of Japan?"), headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "What is the capital of Japan?"
    (sent,) = provider.state.received
    assert sent.json()["model"] == "gpt-echo"  # the provider's own name, not ours
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    # No caller header (trace context, request id, the caller's own key) leaves.
    assert "traceparent" not in sent.headers and "x-request-id" not in sent.headers
    assert harness.user_key not in provider.state.all_bytes().decode()
    request_record, completion = harness.records("egress-ordinary")
    assert request_record.event is AuditEvent.EGRESS_REQUEST
    assert request_record.model == "gpt-echo@frontier"
    assert request_record.params["egress"]["verdict"] == "allow"
    assert completion.event is AuditEvent.COMPLETION and completion.outcome is Outcome.OK
    assert completion.params["egress"]["cost"] == COST
    assert completion.params["egress"]["currency"] == "EUR"
    assert (completion.prompt_tokens, completion.completion_tokens) == (1000, 500)
    assert RECEIPT_HEADER in response.headers


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_findings_above_the_ceiling_are_pseudonymised_and_restored(
    gateway, harness, provider, stream: bool
) -> None:
    text = f"Write to {EMAIL} about the transfer from {IBAN}, then to {EMAIL} again."
    headers = {**team_key(harness), "X-Request-Id": f"egress-pseudo-{stream}"}
    if stream:
        with gateway.stream("POST", CHAT, json=ask(text, stream=True), headers=headers) as answer:
            assert answer.status_code == 200
            got = streamed_text(b"".join(answer.iter_raw()))
    else:
        answer = gateway.post(CHAT, json=ask(text), headers=headers)
        assert answer.status_code == 200, answer.text
        got = answer.json()["choices"][0]["message"]["content"]
    # The caller sees the originals; the provider saw none of them, anywhere.
    assert got == text
    leaked = provider.state.all_bytes()
    assert EMAIL.encode() not in leaked and IBAN.encode() not in leaked
    sent = provider.state.received[0].json()["messages"][0]["content"]
    assert sent.count("⟦EMAIL_1⟧") == 2 and "⟦IBAN_1⟧" in sent
    request_record, completion = harness.records(f"egress-pseudo-{stream}")
    assert request_record.params["egress"]["verdict"] == "pseudonymise"
    assert request_record.params["egress"]["detectors"] == {"email": 2, "iban": 1}
    content = sealed(harness, request_record.record_id)
    assert content["request"]["messages"][0]["content"] == text
    assert content["sent"]["messages"][0]["content"] == sent
    answer_content = sealed(harness, completion.record_id)
    assert answer_content["response"] == [text]
    assert answer_content["received"] == [sent]
    # The values are never in the clear metadata.
    assert EMAIL not in json.dumps(request_record.params) + json.dumps(completion.params)


def test_a_secret_is_blocked_and_never_reaches_the_provider(gateway, harness, provider) -> None:
    headers = {**team_key(harness), "X-Request-Id": "egress-blocked"}
    response = gateway.post(CHAT, json=ask(f"Deploy with {PRIVATE_KEY}"), headers=headers)
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "egress_blocked" and "ceiling.content" in error["message"]
    assert "BEGIN PRIVATE KEY" not in error["message"]
    assert provider.state.received == []
    (denied,) = harness.records("egress-blocked")
    assert denied.event is AuditEvent.DENIED and denied.status_code == 403
    assert denied.params["egress"]["verdict"] == "block"


def test_a_declared_label_above_the_ceiling_blocks(gateway, harness, provider) -> None:
    headers = {**team_key(harness), "X-Data-Classification": "internal"}
    response = gateway.post(CHAT, json=ask("nothing special"), headers=headers)
    assert response.status_code == 403
    assert "ceiling.declared" in response.json()["error"]["message"]
    response = gateway.post(
        CHAT, json=ask("nothing special", data_classification="public"), headers=team_key(harness)
    )
    assert response.status_code == 200
    # The label is the appliance's, not the provider's business: it is removed.
    assert "data_classification" not in provider.state.received[-1].json()


def test_other_teams_and_unscannable_parts_are_refused(gateway, harness, provider) -> None:
    response = gateway.post(CHAT, json=ask("hello"), headers=team_key(harness, "marketing"))
    assert response.status_code == 403
    assert "provider.teams" in response.json()["error"]["message"]
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    parts = [{"type": "text", "text": "what?"}, image]
    body = {"model": "gpt-echo@frontier", "messages": [{"role": "user", "content": parts}]}
    response = gateway.post(CHAT, json=body, headers=team_key(harness))
    assert response.status_code == 403
    assert "content.unscannable" in response.json()["error"]["message"]
    assert provider.state.received == []


@pytest.mark.parametrize("gateway", [{"policy": {"fallback_model": "fake-model"}}], indirect=True)
def test_a_refused_prompt_is_routed_in_house_when_a_fallback_is_set(
    gateway, harness, provider
) -> None:
    headers = {**team_key(harness), "X-Request-Id": "egress-routed"}
    response = gateway.post(CHAT, json=ask(f"Deploy with {PRIVATE_KEY}"), headers=headers)
    assert response.status_code == 200, response.text
    assert provider.state.received == []
    assert harness.fake.requests[-1]["model"] == "fake-model"
    request_record, completion = harness.records("egress-routed")
    assert request_record.event is AuditEvent.REQUEST and request_record.model == "fake-model"
    assert request_record.params["egress"]["verdict"] == "route"
    assert completion.params["egress"]["fallback_model"] == "fake-model"


@pytest.mark.parametrize("gateway", [{"monthly_budget": {"research": "0.001"}}], indirect=True)
def test_a_spent_budget_refuses_with_429_and_is_audited(gateway, harness, provider) -> None:
    headers = {**team_key(harness), "X-Request-Id": "egress-budget"}
    response = gateway.post(CHAT, json=ask("hello"), headers=headers)
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "egress_budget_exceeded"
    assert int(response.headers["retry-after"]) > 0
    assert provider.state.received == []
    (denied,) = harness.records("egress-budget")
    assert denied.event is AuditEvent.DENIED and denied.status_code == 429
    assert denied.params["egress"]["budget"] == "exceeded"


def test_provider_failures_are_ours_and_release_the_budget(gateway, harness, provider) -> None:
    response = gateway.post(CHAT, json=ask("hi", "gpt-429@frontier"), headers=team_key(harness))
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "provider_rate_limited"
    assert response.headers["retry-after"] == "7"
    response = gateway.post(CHAT, json=ask("hi", "gpt-500@frontier"), headers=team_key(harness))
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "provider_error"
    # Other APIs are not offered for external models.
    for path in ("/v1/completions", "/v1/embeddings"):
        body = {"model": "gpt-echo@frontier", "prompt": "hi", "input": "hi"}
        refused = gateway.post(path, json=body, headers=team_key(harness))
        assert refused.status_code in (400, 422), refused.text


def test_models_lists_external_models_to_allowed_teams_only(gateway, harness) -> None:
    listed = gateway.get("/v1/models", headers=team_key(harness)).json()["data"]
    external = {m["id"]: m for m in listed if m["id"].endswith("@frontier")}
    assert set(external) == {"gpt-echo@frontier", "gpt-429@frontier", "gpt-500@frontier"}
    assert external["gpt-echo@frontier"]["owned_by"] == "frontier"
    others = gateway.get("/v1/models", headers=team_key(harness, "marketing")).json()["data"]
    assert not [m for m in others if m["id"].endswith("@frontier")]


def test_the_view_shows_exactly_the_external_calls_and_the_chain_verifies(
    gateway, harness, provider
) -> None:
    key = team_key(harness)
    external = {"mixed-sent": ask(f"mail {EMAIL}"), "mixed-blocked": ask(PRIVATE_KEY)}
    for request_id, body in external.items():
        gateway.post(CHAT, json=body, headers={**key, "X-Request-Id": request_id})
    in_house = {**key, "X-Request-Id": "mixed-in-house"}
    assert gateway.post(CHAT, json=ask("hi", "fake-model"), headers=in_house).status_code == 200
    auditor = auth(harness.key(roles=["appliance-auditor"]))
    view = gateway.get("/ui/api/audit/egress", headers=auditor).json()
    shown = {(r["request_id"], r["event"]) for r in view["records"]}
    assert shown == {
        ("mixed-sent", "egress.request"),
        ("mixed-sent", "inference.completion"),
        ("mixed-blocked", "request.denied"),
    }
    (line,) = view["summary"]["lines"]
    assert (line["team"], line["provider"]) == ("research", "frontier")
    gateway.__exit__(None, None, None)  # the writer signs the tail on shutdown
    report = verify_log(
        SqlAuditStore(create_db_engine(harness.settings.database_url)),
        audit_verifier(harness.settings),
        origin=harness.settings.audit.origin,
    )
    assert report.records >= 5 and report.uncovered == 0


def test_no_provider_means_no_client(harness) -> None:
    app = create_app(harness.settings, secrets=harness.secrets)
    with TestClient(app) as client:
        assert client.app.state.services.egress is None  # type: ignore[attr-defined]
        response = client.post(CHAT, json=ask("hi"), headers=auth(harness.user_key))
        assert response.status_code == 404


def test_the_declared_egress_proxy_carries_the_call(harness, tmp_path, provider) -> None:
    with ConnectProxy() as proxy:
        egress = {"proxy_url": proxy.url, "proxy_cidrs": ["127.0.0.1/32"]}
        harness.settings = egress_settings(harness.settings, tmp_path, provider, egress=egress)
        provider.state.received.clear()
        app = create_app(harness.settings, secrets=harness.secrets)
        with TestClient(app) as client:
            response = client.post(CHAT, json=ask("hello"), headers=team_key(harness))
    assert response.status_code == 200, response.text
    # The provider was reached through the proxy, by a TLS tunnel to its address.
    assert proxy.targets == [f"127.0.0.1:{provider.port}"]
    assert len(provider.state.received) == 1
