"""Building audit records from a request's context and writing them fail-closed."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from appliance.audit.log import Appended, RecordRejected
from appliance.audit.records import AuditEvent, AuditRecord, Outcome, storable, storable_names
from appliance.errors import ApplianceError, AuditUnavailable, InvalidRequest
from appliance.gateway.context import RequestContext
from appliance.gateway.scoring import ranking_of, scoring_content
from appliance.gateway.services import GatewayServices

__all__ = [
    "Answer",
    "AnswerStream",
    "answer_content",
    "answer_of",
    "answer_params",
    "answer_texts",
    "audit_record",
    "delta_texts",
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


def _function_name(item: Any) -> Any:
    """``item["function"]["name"]`` of a tool, named tool choice or tool call."""
    function = item.get("function") if isinstance(item, dict) else None
    return function.get("name") if isinstance(function, dict) else None


def tool_params(payload: dict[str, Any]) -> dict[str, Any]:
    """What a request says about tools and output format, for the clear-text params:
    the names of the tools offered, the tool choice (its mode, or the forced tool's
    name), ``parallel_tool_calls`` and the ``response_format`` type. Never a tool's
    description or parameters, nor a schema: those stay in the sealed content."""
    params: dict[str, Any] = {}
    tools = payload.get("tools")
    if isinstance(tools, list):
        params["tools"] = storable_names(_function_name(tool) for tool in tools)
    choice = payload.get("tool_choice")
    mode = storable_names([choice]) if isinstance(choice, str) else []
    if mode:
        params["tool_choice"] = mode[0]
    elif isinstance(choice, dict):
        named = storable_names([_function_name(choice)])
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


@dataclass(frozen=True)
class Answer:
    """What the engine answered, for the audit: the text of each choice (in index
    order) and every tool call, each with its ``choice`` index, ``id``, ``type`` and
    ``function`` (``name``, ``arguments``). For embeddings only how many vectors and
    their dimension: never a vector. For rerank and score the ``ranking``: each
    result's document index and score. For ``/v1/responses`` also the ``output`` items
    as the engine sent them and the rest of the Response object (both None when the
    response never completed), from which a later ``previous_response_id`` rebuilds
    the conversation and ``GET /v1/responses/{id}`` answers."""

    texts: list[str] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    embeddings: int | None = None
    dimensions: int | None = None
    output: list[Any] | None = None
    response: dict[str, Any] | None = None  # the Response object but its output
    ranking: list[dict[str, Any]] | None = None  # rerank/score: [{"index", "score"}]

    def tool_names(self) -> list[str]:
        return storable_names(_function_name(call) for call in self.tool_calls)


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


def _choice_tool_calls(choice: Any, part: str) -> tuple[int, list[Any]] | None:
    if not isinstance(choice, dict) or not isinstance(choice.get(part), dict):
        return None
    index = choice.get("index", 0)
    calls = choice[part].get("tool_calls")
    if not isinstance(index, int) or not isinstance(calls, list):
        return None
    return index, calls


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


def _dimension(vector: Any) -> int | None:
    """A vector's length: a float list's, or a base64 one's float32 count."""
    if isinstance(vector, list):
        return len(vector)
    if isinstance(vector, str):
        padding = vector[-2:].count("=")
        return (len(vector) * 3 // 4 - padding) // 4
    return None


def _embeddings_of(answer: dict[str, Any]) -> Answer | None:
    data = answer.get("data")
    if not isinstance(data, list):
        return None
    first = data[0] if data and isinstance(data[0], dict) else {}
    return Answer(embeddings=len(data), dimensions=_dimension(first.get("embedding")))


def answer_of(answer: dict[str, Any] | None) -> Answer | None:
    """A non-streamed answer's text and tool calls, or its embeddings' count and
    dimension; None when it has neither choices nor data."""
    if answer is not None and "choices" not in answer:
        ranking = ranking_of(answer)
        return _embeddings_of(answer) if ranking is None else Answer(ranking=ranking)
    texts = answer_texts(answer)
    if answer is None or texts is None:
        return None
    calls: list[dict[str, Any]] = []
    for choice in answer["choices"]:
        found = _choice_tool_calls(choice, "message")
        if found is not None:
            index, made = found
            calls.extend({"choice": index, **call} for call in made if isinstance(call, dict))
    return Answer(texts=texts, tool_calls=calls)


def delta_texts(chunk: dict[str, Any] | None, into: dict[int, list[str]]) -> None:
    """Add a streamed chunk's text deltas to ``into`` (choice index -> pieces)."""
    if chunk is None or not isinstance(chunk.get("choices"), list):
        return
    for choice in chunk["choices"]:
        found = _choice_text(choice, "delta")
        if found is not None:
            into.setdefault(found[0], []).append(found[1])


class AnswerStream:
    """A streamed answer put together from its chunks: text deltas joined per choice,
    tool call deltas merged per (choice, call index) as OpenAI's clients do (``id``
    and ``type`` taken when present, ``name`` and ``arguments`` pieces joined)."""

    def __init__(self) -> None:
        self._texts: dict[int, list[str]] = {}
        self._calls: dict[tuple[int, int], dict[str, Any]] = {}

    def add(self, chunk: dict[str, Any] | None) -> None:
        if chunk is None or not isinstance(chunk.get("choices"), list):
            return
        for choice in chunk["choices"]:
            text = _choice_text(choice, "delta")
            if text is not None:
                self._texts.setdefault(text[0], []).append(text[1])
            calls = _choice_tool_calls(choice, "delta")
            if calls is not None:
                for delta in calls[1]:
                    if isinstance(delta, dict):
                        self._merge(calls[0], delta)

    def _merge(self, choice: int, delta: dict[str, Any]) -> None:
        position = delta.get("index", 0)
        if not isinstance(position, int):
            return
        call = self._calls.setdefault(
            (choice, position),
            {"choice": choice, "id": None, "type": "function",
             "function": {"name": "", "arguments": ""}},
        )  # fmt: skip
        for key in ("id", "type"):
            if isinstance(delta.get(key), str):
                call[key] = delta[key]
        function = delta.get("function")
        if isinstance(function, dict):
            for key in ("name", "arguments"):
                if isinstance(function.get(key), str):
                    call["function"][key] += function[key]

    def answer(self) -> Answer:
        return Answer(
            texts=["".join(self._texts[i]) for i in sorted(self._texts)],
            tool_calls=[self._calls[key] for key in sorted(self._calls)],
        )


def answer_content(answer: Answer | None) -> dict[str, Any] | None:
    """The sealed content of a completion record: the texts, a response's output items,
    and the tool calls with their arguments when the answer made any; for embeddings
    their count and dimension only (a vector can be inverted back to much of its text,
    so none is stored)."""
    if answer is None:
        return None
    if answer.embeddings is not None:
        return {"embeddings": answer.embeddings, "dimensions": answer.dimensions}
    if answer.ranking is not None:
        return {"ranking": answer.ranking}
    content: dict[str, Any] = {"response": answer.texts}
    if answer.output is not None:
        content["output"] = answer.output
    if answer.response is not None:
        content["object"] = answer.response
    if answer.tool_calls:
        content["tool_calls"] = answer.tool_calls
    return content


def answer_params(answer: Answer | None) -> dict[str, Any] | None:
    """Clear-text params of a completion record: the names of the tools the answer
    called (never their arguments), or how many embeddings it holds and their dimension."""
    if answer is not None and answer.embeddings is not None:
        return {"embeddings": answer.embeddings, "dimensions": answer.dimensions}
    if answer is not None and answer.ranking is not None:
        return {"results": len(answer.ranking)}
    names = answer.tool_names() if answer is not None else []
    return {"tool_calls": names} if names else None
