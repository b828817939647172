"""Building audit records from a request's context and writing them fail-closed."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from starlette.requests import Request

from appliance.audit.log import RecordRejected
from appliance.audit.records import AuditEvent, AuditRecord, Outcome, storable
from appliance.errors import ApplianceError, AuditUnavailable, InvalidRequest
from appliance.gateway.context import RequestContext
from appliance.gateway.services import GatewayServices

__all__ = [
    "answer_content",
    "answer_texts",
    "audit_record",
    "delta_texts",
    "request_content",
    "write_audit",
]

logger = logging.getLogger("appliance.gateway.audit")


def audit_record(
    services: GatewayServices,
    request: Request,
    context: RequestContext,
    *,
    event: AuditEvent,
    status_code: int,
    outcome: Outcome,
    denial_reason: str | None = None,
    prompt_tokens: int | None = None,
    completion_tokens: int | None = None,
    content: dict[str, Any] | None = None,
) -> AuditRecord:
    """``content`` (prompt or answer) goes only into the encrypted envelope. The record
    is normalised to what every store holds (:func:`storable`) before it reaches a
    group-commit batch, so no caller's text can fail the records batched beside it."""
    principal = context.principal
    record = AuditRecord(
        record_id=str(uuid.uuid4()),
        recorded_at=services.clock(),
        event=event,
        request_id=context.request_id,
        http_method=request.method,
        path=request.url.path[:200],
        status_code=status_code,
        outcome=outcome,
        subject=principal.subject if principal else None,
        username=principal.username if principal else None,
        team=principal.team if principal else None,
        auth_method=principal.auth_method.value if principal else None,
        key_id=principal.key_id if principal else None,
        client_addr=request.client.host if request.client else None,
        model=context.model,
        params=context.params,
        denial_reason=denial_reason,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        latency_ms=None if event is AuditEvent.REQUEST else context.elapsed_ms(),
        content=content,
    )
    return storable(record)


async def write_audit(services: GatewayServices, record: AuditRecord) -> None:
    """Append or raise AuditUnavailable: callers refuse the request when this fails."""
    try:
        await services.audit.append(record)
    except ApplianceError:
        raise
    except RecordRejected as exc:
        # This record alone could not be sealed: the caller's own input is at fault.
        logger.warning("audit record refused for request %s: %s", record.request_id, exc)
        raise InvalidRequest(
            "the request cannot be recorded in the audit log (unsupported text); it was not served"
        ) from exc
    except Exception as exc:
        logger.exception("audit append failed for request %s", record.request_id)
        raise AuditUnavailable("the audit log is unavailable; the request was not served") from exc


# -- content for the encrypted envelope ---------------------------------------------


def request_content(payload: dict[str, Any]) -> dict[str, Any]:
    """What the caller asked: chat messages, or a completion prompt."""
    if "messages" in payload:
        return {"messages": payload["messages"]}
    return {"prompt": payload.get("prompt")}


def _choice_text(choice: Any, part: str) -> tuple[int, str] | None:
    if not isinstance(choice, dict):
        return None
    index = choice.get("index", 0)
    text = choice.get("text")
    holder = choice.get(part)
    if isinstance(holder, dict):
        text = holder.get("content")
    if not isinstance(index, int) or not isinstance(text, str):
        return None
    return index, text


def answer_texts(answer: dict[str, Any] | None) -> list[str] | None:
    """The text of each choice of a non-streamed answer (chat or completion)."""
    if answer is None or not isinstance(answer.get("choices"), list):
        return None
    texts: dict[int, str] = {}
    for choice in answer["choices"]:
        found = _choice_text(choice, "message")
        if found is not None:
            texts[found[0]] = texts.get(found[0], "") + found[1]
    return [texts[i] for i in sorted(texts)]


def delta_texts(chunk: dict[str, Any] | None, into: dict[int, list[str]]) -> None:
    """Add a streamed chunk's text deltas to ``into`` (choice index -> pieces)."""
    if chunk is None or not isinstance(chunk.get("choices"), list):
        return
    for choice in chunk["choices"]:
        found = _choice_text(choice, "delta")
        if found is not None:
            into.setdefault(found[0], []).append(found[1])


def answer_content(texts: list[str] | None) -> dict[str, Any] | None:
    return None if texts is None else {"response": texts}
