"""Stored responses, read back from the audit log for ``previous_response_id`` and
``GET /v1/responses/{id}``.

A response is stored when its request said ``store: true`` (OpenAI's default) and it
completed: its request record seals the whole input the engine got, its completion
record the output items, both under the caller's subject key. Only that caller (the
same subject) can continue it; for anyone else, and for an id that is unknown, was
sent with ``store: false``, did not complete, or whose subject key was shredded, the
answer is the same 404. Nothing is deleted (the log is append-only): erasure is
crypto-shredding the subject, as for chat conversations and audit content.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
from sqlalchemy.exc import SQLAlchemyError

from appliance.audit.envelope import open_envelope
from appliance.audit.keyring import SubjectKeyRing
from appliance.audit.log import AuditLog
from appliance.audit.records import AuditEvent, Outcome, metadata_bytes
from appliance.audit.store import SearchFilter, StoredEntry
from appliance.errors import ApplianceError, AuditUnavailable, ModelNotFound
from appliance.gateway.audit_access import audit_log_of
from appliance.gateway.responses import request_id_of
from appliance.gateway.services import GatewayServices

__all__ = ["StoredResponse", "load_stored_response"]

logger = logging.getLogger("appliance.gateway.responses")

# A streamed response's completion record is written as its stream closes, which can
# be just after the client read the last event: a continuation that arrives in that
# moment waits this long for it.
_PENDING_WAIT_S = 5.0
_PENDING_POLL_S = 0.05


@dataclass(frozen=True)
class StoredResponse:
    response_id: str
    input: Any  # the whole input the engine got (a string or a list of items)
    output: list[Any]  # the response's output items
    response: dict[str, Any]  # the rest of the Response object as the engine sent it

    def view(self) -> dict[str, Any]:
        """The Response object, as ``GET /v1/responses/{id}`` answers it."""
        return {**self.response, "id": self.response_id, "output": self.output}


class _Pending(Exception):
    """The request record is there, the completion record not yet."""


def _not_found(response_id: str, param: str) -> ModelNotFound:
    return ModelNotFound(
        f"{param} {response_id!r} names no stored response of yours "
        "(unknown, stored with store: false, not completed, or erased)",
        param=param,
        code="response_not_found",
    )


def _content(keyring: SubjectKeyRing, log: AuditLog, stored: StoredEntry) -> dict[str, Any] | None:
    entry = stored.entry
    if entry.content_key_id is None:
        return None
    key = keyring.key(entry.content_key_id)  # None once the subject was shredded
    envelope = log.store.envelope(entry.index)  # None once retention dropped it
    if key is None or envelope is None:
        return None
    plaintext = open_envelope(
        envelope, associated_data=metadata_bytes(entry.record), subject_key=key
    )
    content: dict[str, Any] = json.loads(plaintext)
    return content


def _find(
    log: AuditLog, keyring: SubjectKeyRing, subject: str, response_id: str
) -> StoredResponse | None:
    request_id = request_id_of(response_id)
    if request_id is None:
        return None
    request: StoredEntry | None = None
    completion: StoredEntry | None = None
    # (A client may reuse its X-Request-ID: the response id's random part tells apart.)
    records = SearchFilter(request_id=request_id, subject=subject, limit=1000)
    for stored in log.store.search(records):
        record = stored.entry.record
        if (record.params or {}).get("response_id") != response_id:
            continue
        if record.event is AuditEvent.REQUEST:
            request = stored
        elif record.event is AuditEvent.COMPLETION:
            completion = stored
    if request is None or (request.entry.record.params or {}).get("store") is not True:
        return None
    if completion is None:
        raise _Pending
    if completion.entry.record.outcome is not Outcome.OK:
        return None
    asked = _content(keyring, log, request)
    answered = _content(keyring, log, completion)
    if asked is None or answered is None or not isinstance(answered.get("output"), list):
        return None
    response = answered.get("object")
    return StoredResponse(
        response_id,
        asked.get("input"),
        answered["output"],
        response if isinstance(response, dict) else {"object": "response"},
    )


async def load_stored_response(
    services: GatewayServices,
    subject: str,
    response_id: str,
    *,
    param: str = "previous_response_id",
) -> StoredResponse:
    """The caller's stored response ``response_id``, or the 404 ``response_not_found``
    naming ``param`` (the same whoever asks and whatever the reason)."""
    try:
        log = audit_log_of(services)
    except ApplianceError as exc:  # a gateway without a sealed log stores nothing
        raise _not_found(response_id, param) from exc
    # Its own ring: the audit writer's thread stages keys in the log's.
    keyring = SubjectKeyRing(services.database, log.keyring.provider)
    deadline = time.monotonic() + _PENDING_WAIT_S
    while True:
        try:
            found = await anyio.to_thread.run_sync(
                lambda: _find(log, keyring, subject, response_id)
            )
        except _Pending:
            if time.monotonic() < deadline:
                await anyio.sleep(_PENDING_POLL_S)
                continue
            found = None
        except SQLAlchemyError as exc:
            raise AuditUnavailable("stored responses cannot be read right now") from exc
        except ApplianceError:  # VerificationError: the envelope does not open
            logger.warning("stored response %s could not be opened", response_id, exc_info=True)
            found = None
        if found is None:
            raise _not_found(response_id, param)
        return found
