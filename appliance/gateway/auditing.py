"""Building audit records from a request's context and writing them fail-closed.

What of an answer is sealed and what is clear lives in :mod:`appliance.gateway.answers`."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from starlette.requests import Request

from appliance.audit.log import Appended, RecordRejected
from appliance.audit.records import AuditEvent, AuditRecord, Outcome, storable, storable_names
from appliance.errors import ApplianceError, AuditUnavailable, InvalidRequest
from appliance.gateway.answers import function_name
from appliance.gateway.context import RequestContext
from appliance.gateway.scoring import scoring_content
from appliance.gateway.services import GatewayServices

__all__ = [
    "audit_record",
    "embedding_params",
    "request_content",
    "response_tool_params",
    "tool_params",
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
    extra_params: dict[str, Any] | None = None,
) -> AuditRecord:
    """``content`` (prompt or answer) goes only into the encrypted envelope;
    ``extra_params`` (such as :func:`answer_params`) joins the request's clear-text
    params for this record. The record is normalised to what every store holds
    (:func:`storable`) before it reaches a group-commit batch, so no caller's text can
    fail the records batched beside it."""
    principal = context.principal
    params = context.params
    if extra_params:
        params = {**(params or {}), **extra_params}
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
        params=params,
        denial_reason=denial_reason,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        latency_ms=None if event is AuditEvent.REQUEST else context.elapsed_ms(),
        content=content,
    )
    return storable(record)


async def write_audit(services: GatewayServices, record: AuditRecord) -> Appended | None:
    """Append or raise AuditUnavailable: callers refuse the request when this fails.
    Where the record went in (a Merkle log; None from a sink that is none)."""
    try:
        return await services.audit.append(record)
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


# -- clear-text metadata about tools and structured output -----------------------


def tool_params(payload: dict[str, Any]) -> dict[str, Any]:
    """What a request says about tools and output format, for the clear-text params:
    the names of the tools offered, the tool choice (its mode, or the forced tool's
    name), ``parallel_tool_calls`` and the ``response_format`` type. Never a tool's
    description or parameters, nor a schema: those stay in the sealed content."""
    params: dict[str, Any] = {}
    tools = payload.get("tools")
    if isinstance(tools, list):
        params["tools"] = storable_names(function_name(tool) for tool in tools)
    choice = payload.get("tool_choice")
    mode = storable_names([choice]) if isinstance(choice, str) else []
    if mode:
        params["tool_choice"] = mode[0]
    elif isinstance(choice, dict):
        named = storable_names([function_name(choice)])
        params["tool_choice"] = {"function": named[0]} if named else "function"
    if isinstance(payload.get("parallel_tool_calls"), bool):
        params["parallel_tool_calls"] = payload["parallel_tool_calls"]
    response_format = payload.get("response_format")
    if isinstance(response_format, dict):
        kind = storable_names([response_format.get("type")])
        if kind:
            params["response_format"] = kind[0]
    return params


def _response_tool_name(tool: Any) -> Any:
    """A Responses API tool's name: a function's ``name``, else the built-in tool's
    ``type`` (``web_search_preview``, ``mcp`` ...)."""
    if not isinstance(tool, dict):
        return None
    return tool.get("name") if tool.get("type") == "function" else tool.get("type")


def response_tool_params(payload: dict[str, Any]) -> dict[str, Any]:
    """:func:`tool_params` for ``/v1/responses``, whose tools and tool choice are flat
    (``{"type": "function", "name": ...}``) and whose output format is ``text.format``:
    the tool names, the tool choice (mode, ``{"function": name}`` or a built-in tool's
    ``{"type": type}``), ``parallel_tool_calls`` and
    ``response_format``: the ``text.format`` type. Never a description or a schema."""
    params: dict[str, Any] = {}
    tools = payload.get("tools")
    if isinstance(tools, list):
        params["tools"] = storable_names(_response_tool_name(tool) for tool in tools)
    choice = payload.get("tool_choice")
    mode = storable_names([choice]) if isinstance(choice, str) else []
    if mode:
        params["tool_choice"] = mode[0]
    elif isinstance(choice, dict):
        named = storable_names([_response_tool_name(choice)])
        key = "function" if choice.get("type") == "function" else "type"
        params["tool_choice"] = {key: named[0]} if named else "function"
    if isinstance(payload.get("parallel_tool_calls"), bool):
        params["parallel_tool_calls"] = payload["parallel_tool_calls"]
    text = payload.get("text")
    text_format = text.get("format") if isinstance(text, dict) else None
    if isinstance(text_format, dict):
        kind = storable_names([text_format.get("type")])
        if kind:
            params["response_format"] = kind[0]
    return params


def embedding_params(payload: dict[str, Any]) -> dict[str, Any]:
    """What an embeddings request says in clear: how many inputs, the encoding format
    and the dimensions asked for. Never the input itself (sealed content)."""
    if "input" not in payload or "messages" in payload or "prompt" in payload:
        return {}
    value = payload["input"]
    many = isinstance(value, list) and bool(value) and not isinstance(value[0], int)
    params: dict[str, Any] = {
        "inputs": len(value) if many else 1,
        "encoding_format": payload.get("encoding_format", "float"),
    }
    if payload.get("dimensions") is not None:
        params["dimensions"] = payload["dimensions"]
    return params


# -- content for the encrypted envelope ---------------------------------------------


def request_content(payload: dict[str, Any]) -> dict[str, Any]:
    """What the caller asked: chat messages (tool results among them), a completion
    prompt or embeddings input; with the tools offered, the tool choice and the response
    format if any; a rerank or score request's query and documents."""
    scoring = scoring_content(payload)
    if scoring is not None:
        return scoring
    if "messages" in payload:
        content = {"messages": payload["messages"]}
    elif "input" in payload and "prompt" not in payload:
        content = {"input": payload["input"]}
    else:
        content = {"prompt": payload.get("prompt")}
    for key in ("tools", "tool_choice", "response_format", "structured_outputs"):
        if key in payload:
            content[key] = payload[key]
    return content
