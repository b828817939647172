"""``store`` and ``previous_response_id`` on ``/v1/responses``: the gateway keeps a
response sealed in the audit log under the caller's key and continues it only for that
caller, by rebuilding the input; the engine never stores or serves a response."""

from __future__ import annotations

from typing import Any

import pytest

from appliance.audit.records import AuditEvent
from appliance.audit.wiring import open_audit_log
from appliance.db import create_db_engine
from appliance.gateway.services import utc_now
from tests.integration.test_responses_gateway import RESPONSES, events, sealed
from tests.support.fake_responses import RESPONSE_TEXT
from tests.support.requests import auth

FIRST = "What is the capital of France?"
SECOND = "And of Italy?"
THIRD = "And of Spain?"


def ask(client, key: str, text: str, **extra: Any) -> Any:  # type: ignore[no-untyped-def]
    return client.post(
        RESPONSES, json={"model": "fake-model", "input": text, **extra}, headers=auth(key)
    )


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": text}


def assistant_output(response: Any) -> list[Any]:
    output: list[Any] = response.json()["output"]
    return output


def test_a_continuation_rebuilds_the_whole_conversation(client, harness) -> None:
    first = ask(client, harness.user_key, FIRST)
    assert first.status_code == 200
    second = ask(client, harness.user_key, SECOND, previous_response_id=first.json()["id"])
    assert second.status_code == 200, second.text
    received = harness.fake.requests[-1]
    assert "previous_response_id" not in received and received["store"] is False
    assert received["input"] == [user(FIRST), *assistant_output(first), user(SECOND)]
    # Transitively: the third turn carries all of it.
    third = ask(
        client, harness.user_key, [user(THIRD)], previous_response_id=second.json()["id"],
        instructions="Be brief.",
    )  # fmt: skip
    assert third.status_code == 200
    received = harness.fake.requests[-1]
    assert received["input"] == [
        user(FIRST), *assistant_output(first), user(SECOND), *assistant_output(second),
        user(THIRD),
    ]  # fmt: skip
    assert received["instructions"] == "Be brief."
    # The audit: the id continued in clear, the whole input sealed.
    request = harness.records(third.headers["x-request-id"])[0]
    assert request.params["previous_response_id"] == second.json()["id"]
    assert sealed(harness, request.record_id)["input"] == received["input"]  # type: ignore[index]


def test_a_streamed_response_can_be_continued_at_once(client, harness) -> None:
    with client.stream(
        "POST", RESPONSES, json={"model": "fake-model", "input": FIRST, "stream": True},
        headers=auth(harness.user_key),
    ) as response:  # fmt: skip
        raw = b"".join(response.iter_raw())
    done = events(raw)[-1]["response"]
    second = ask(client, harness.user_key, SECOND, previous_response_id=done["id"])
    assert second.status_code == 200, second.text
    assert harness.fake.requests[-1]["input"] == [user(FIRST), *done["output"], user(SECOND)]
    assert done["output"][0]["content"][0]["text"] == RESPONSE_TEXT


def not_found(response: Any, response_id: str) -> str:
    assert response.status_code == 404, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("response_not_found", "previous_response_id")
    message: str = error["message"].replace(response_id, "<id>")
    return message


def test_only_the_owner_can_continue_and_others_learn_nothing(client, harness) -> None:
    mine = ask(client, harness.user_key, FIRST).json()["id"]
    unknown = mine[:-3] + "xyz"
    sent = len(harness.fake.requests)
    other = harness.key()
    stranger = ask(client, other, SECOND, previous_response_id=mine)
    answers = {
        not_found(stranger, mine),
        not_found(ask(client, other, SECOND, previous_response_id=unknown), unknown),
        not_found(ask(client, harness.user_key, SECOND, previous_response_id=unknown), unknown),
        not_found(ask(client, harness.user_key, SECOND, previous_response_id="resp_x"), "resp_x"),
    }
    assert len(answers) == 1  # the same answer, whatever the reason
    assert len(harness.fake.requests) == sent  # no engine saw any of them
    (denied,) = harness.records(stranger.headers["x-request-id"])
    assert denied.event is AuditEvent.DENIED and "response_not_found" in (
        denied.denial_reason or ""
    )


def test_store_false_is_not_kept_for_continuation(client, harness) -> None:
    kept_not = ask(client, harness.user_key, FIRST, store=False)
    assert kept_not.status_code == 200
    assert harness.records(kept_not.headers["x-request-id"])[0].params["store"] is False
    response_id = kept_not.json()["id"]
    not_found(ask(client, harness.user_key, SECOND, previous_response_id=response_id), response_id)


@pytest.mark.parametrize("model", ["fake-500", "fake-400"])
def test_a_failed_response_cannot_be_continued(client, harness, model: str) -> None:
    failed = ask(client, harness.user_key, FIRST, model=model)
    assert failed.status_code >= 400
    request = harness.records(failed.headers["x-request-id"])[0]
    response_id = request.params["response_id"]
    not_found(ask(client, harness.user_key, SECOND, previous_response_id=response_id), response_id)


def test_shredding_the_subject_erases_its_responses(client, harness) -> None:
    first = ask(client, harness.user_key, FIRST)
    response_id = first.json()["id"]
    subject = harness.records(first.headers["x-request-id"])[0].subject
    log = open_audit_log(harness.settings, create_db_engine(harness.settings.database_url))
    assert log.keyring.shred(subject, utc_now()) >= 1
    not_found(ask(client, harness.user_key, SECOND, previous_response_id=response_id), response_id)


def test_the_owner_retrieves_a_stored_response_others_get_404(client, harness) -> None:
    first = ask(client, harness.user_key, FIRST)
    response_id = first.json()["id"]
    path = f"{RESPONSES}/{response_id}"
    sent = len(harness.fake.requests)
    got = client.get(path, headers=auth(harness.user_key))
    assert got.status_code == 200
    assert got.json() == first.json()  # the Response object as the engine sent it
    stranger = client.get(path, headers=auth(harness.key()))
    missing = client.get(f"{RESPONSES}/{response_id[:-3]}xyz", headers=auth(harness.user_key))
    for refused in (stranger, missing):
        assert refused.status_code == 404
        error = refused.json()["error"]
        assert (error["code"], error["param"]) == ("response_not_found", "response_id")
    assert len(harness.fake.requests) == sent  # the engine's store was never asked
    (denied,) = harness.records(stranger.headers["x-request-id"])
    assert denied.event is AuditEvent.DENIED
    # A streamed response is retrievable too; one sent with store: false is not.
    with client.stream(
        "POST", RESPONSES, json={"model": "fake-model", "input": FIRST, "stream": True},
        headers=auth(harness.user_key),
    ) as response:  # fmt: skip
        done = events(b"".join(response.iter_raw()))[-1]["response"]
    assert client.get(f"{RESPONSES}/{done['id']}", headers=auth(harness.user_key)).json() == done
    unkept = ask(client, harness.user_key, FIRST, store=False).json()["id"]
    assert client.get(f"{RESPONSES}/{unkept}", headers=auth(harness.user_key)).status_code == 404


def test_no_delete_nor_cancel(client, harness) -> None:
    """The audit log is append-only (erasure is shredding the owner's key), and the
    engine's own routes are never reachable through the gateway."""
    response_id = ask(client, harness.user_key, FIRST).json()["id"]
    deleted = client.delete(f"{RESPONSES}/{response_id}", headers=auth(harness.user_key))
    assert deleted.status_code == 405 and "error" in deleted.json()
    cancel = client.post(f"{RESPONSES}/{response_id}/cancel", headers=auth(harness.user_key))
    assert cancel.status_code == 404
