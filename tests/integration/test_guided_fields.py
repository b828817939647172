"""vLLM 0.32 removed the ``guided_*`` request fields and ignores them (HTTP 200,
unconstrained output): the gateway refuses them with an OpenAI-shaped 400 naming the
field and its replacement, before any engine sees the request, and audits the refusal."""

from __future__ import annotations

from typing import Any

import pytest

from appliance.audit.records import AuditEvent, Outcome
from appliance.gateway.schemas import REMOVED_GUIDED_FIELDS
from tests.support.requests import CHAT, auth, chat_body

SCHEMA = {"type": "object", "properties": {"capital": {"type": "string"}}}
VALUES: dict[str, Any] = {
    "guided_json": SCHEMA,
    "guided_regex": "[A-Z][a-z]+",
    "guided_choice": ["Paris", "Lyon"],
    "guided_grammar": 'root ::= "Paris"',
    "guided_decoding_backend": "xgrammar",
    "guided_whitespace_pattern": " ?",
}
REPLACEMENT = {
    "guided_json": "structured_outputs",
    "guided_regex": '{"regex"',
    "guided_choice": '{"choice"',
    "guided_grammar": '{"grammar"',
    "guided_decoding_backend": "--structured-outputs-config",
    "guided_whitespace_pattern": '{"whitespace_pattern"',
}
ROUTES = {
    "chat": (CHAT, chat_body()),
    "completions": ("/v1/completions", {"model": "fake-model", "prompt": "hi"}),
    "responses": ("/v1/responses", {"model": "fake-model", "input": "hi"}),
}


def test_the_list_is_the_engines() -> None:
    """The same six names vLLM 0.32 warns about (``_REMOVED_GUIDED_FIELDS``)."""
    assert set(VALUES) == set(REMOVED_GUIDED_FIELDS)
    protocol = pytest.importorskip("vllm.entrypoints.serve.engine.protocol")
    assert set(protocol._REMOVED_GUIDED_FIELDS) == set(REMOVED_GUIDED_FIELDS)


@pytest.mark.parametrize("route", sorted(ROUTES))
@pytest.mark.parametrize("field", sorted(VALUES))
def test_removed_field_is_a_400_naming_its_replacement(
    client, harness, field: str, route: str
) -> None:
    path, body = ROUTES[route]
    sent = len(harness.fake.requests)
    response = client.post(
        path, json={**body, field: VALUES[field]}, headers=auth(harness.user_key)
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error", "invalid_request", field,
    )  # fmt: skip
    assert field in error["message"] and "unconstrained" in error["message"]
    assert REPLACEMENT[field] in error["message"]
    assert len(harness.fake.requests) == sent  # no engine saw it
    (denied,) = harness.records(response.headers["x-request-id"])
    assert (denied.event, denied.outcome, denied.status_code) == (
        AuditEvent.DENIED, Outcome.INVALID, 400,
    )  # fmt: skip
    assert field in (denied.denial_reason or "")


def test_streamed_request_is_refused_the_same_way(client, harness) -> None:
    response = client.post(
        CHAT, json=chat_body(stream=True, guided_choice=["a"]), headers=auth(harness.user_key)
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "guided_choice"


def test_the_replacements_pass(client, harness) -> None:
    body = chat_body(structured_outputs={"regex": "[A-Z][a-z]+"})
    response = client.post(CHAT, json=body, headers=auth(harness.user_key))
    assert response.status_code == 200
    assert harness.fake.requests[-1]["structured_outputs"] == {"regex": "[A-Z][a-z]+"}
