"""The admitted request's journey: limits, the request record, the destination's
answer relayed whole or streamed, the completion record and the receipt.

A :class:`Destination` is where the request goes: an in-house engine
(:class:`EngineDestination`) or an external provider
(:class:`appliance.gateway.egress_call.ProviderDestination`). No byte of an answer
reaches the client before the request record is durable, nor a request a provider; an
in-house engine starts on it meanwhile, aborted if the record fails (docs/audit.md). A
client holds a whole answer only once its completion record is durable.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import anyio
from fastapi import Request, Response

from appliance.audit.log import Appended
from appliance.audit.receipts import RECEIPT_HEADER
from appliance.audit.records import AuditEvent, AuditRecord, Outcome
from appliance.errors import ApplianceError, UpstreamError
from appliance.gateway.answers import Answer, answer_content, answer_of, answer_params
from appliance.gateway.auditing import audit_record, request_content, write_audit
from appliance.gateway.context import RequestContext
from appliance.gateway.engine_errors import engine_refusal
from appliance.gateway.receipting import issue_receipt, with_answer_commitment
from appliance.gateway.responses import ResponseEvents, response_answer, response_content
from appliance.gateway.responses import response_usage as _response_usage
from appliance.gateway.schemas import OpenAIRequest, reserve_tokens
from appliance.gateway.services import GatewayServices
from appliance.gateway.sse import Usage, usage_of
from appliance.gateway.streaming import ChatEvents, RelayResponse, StreamEvents, StreamRelay
from appliance.gateway.upstream import UpstreamAnswer
from appliance.identity.principal import Principal
from appliance.limits import Lease, request_priority
from appliance.telemetry import RequestObservation

__all__ = [
    "COMPLETIONS",
    "RESPONSES",
    "Destination",
    "Dialect",
    "EngineDestination",
    "forward",
]


@dataclass(frozen=True)
class Dialect:
    """How one API's bodies are read for the audit: what of the request is sealed, and
    where the answer keeps its usage and content, whole or streamed."""

    request_content: Callable[[dict[str, Any]], dict[str, Any]]
    usage: Callable[[dict[str, Any] | None], Usage | None]
    answer: Callable[[dict[str, Any] | None], Answer | None]
    events: Callable[[], StreamEvents]
    # Chat and text completions stream usage only when asked (stream_options).
    asks_usage: bool


COMPLETIONS = Dialect(request_content, usage_of, answer_of, ChatEvents, asks_usage=True)
RESPONSES = Dialect(
    response_content, _response_usage, response_answer, ResponseEvents, asks_usage=False
)


class Destination(Protocol):
    """Where an admitted request goes, and what of it the audit records."""

    # The request record's event: inference.request in-house, egress.request outside.
    request_event: AuditEvent
    # Whether the caller's role sets an engine ``priority`` in the body (in-house only).
    engine_priority: bool
    # Whether the request goes out while its record is being made durable (the answer
    # is held until it is): in-house only, an external provider must never see it first.
    overlaps_audit: bool

    def request_content(self, sent: dict[str, Any]) -> dict[str, Any]:
        """The request record's sealed content, from the dialect's view of what is sent."""

    async def reserve(self) -> None:
        """Take what the call may cost before its record is written (may refuse)."""

    async def open(
        self,
        model: str,
        path: str,
        payload: dict[str, Any],
        *,
        request_id: str,
        headers: Mapping[str, str] | None,
    ) -> UpstreamAnswer:
        """Send the request; the caller closes the answer."""

    def refusal(self, model: str, path: str, answer: UpstreamAnswer, body: bytes) -> ApplianceError:
        """A non-200 answer as our error."""

    async def settle(self, outcome: Outcome, usage: Usage | None) -> dict[str, Any]:
        """Settle what :meth:`reserve` took; extra clear params of the completion record."""

    def answer_extra(self) -> dict[str, Any]:
        """Extra sealed content of the completion record."""


class EngineDestination:
    """An in-house vLLM engine, through the replica pool."""

    request_event = AuditEvent.REQUEST
    engine_priority = True
    overlaps_audit = True

    def __init__(self, services: GatewayServices) -> None:
        self._upstream = services.upstream

    def request_content(self, sent: dict[str, Any]) -> dict[str, Any]:
        return sent

    async def reserve(self) -> None:
        return None

    async def open(
        self,
        model: str,
        path: str,
        payload: dict[str, Any],
        *,
        request_id: str,
        headers: Mapping[str, str] | None,
    ) -> UpstreamAnswer:
        return await self._upstream.open_stream(
            model, path, payload, request_id=request_id, headers=headers
        )

    def refusal(self, model: str, path: str, answer: UpstreamAnswer, body: bytes) -> ApplianceError:
        return engine_refusal(model, path, answer.status_code, body)

    async def settle(self, outcome: Outcome, usage: Usage | None) -> dict[str, Any]:
        return {}

    def answer_extra(self) -> dict[str, Any]:
        return {}


async def _admit(
    services: GatewayServices,
    principal: Principal,
    payload: dict[str, Any],
    reserve: int,
    *,
    engine_priority: bool,
) -> tuple[Lease | None, dict[str, Any]]:
    """Reserve ``reserve`` tokens of quota (raises RateLimited) and set the role's
    engine priority."""
    limits = services.settings.limits
    lease = None
    if services.limiter is not None:
        lease = await services.limiter.admit(principal, reserve)
    # The role decides the engine priority, never the client: a client-sent one is
    # dropped, so nobody schedules themselves ahead of others.
    payload = {key: value for key, value in payload.items() if key != "priority"}
    priority = request_priority(principal.roles, limits.priority) if engine_priority else None
    if priority is not None:
        payload["priority"] = priority
    return lease, payload


async def _timed_write_audit(services: GatewayServices, record: AuditRecord) -> Appended | None:
    if services.telemetry is None:
        return await write_audit(services, record)
    return await services.telemetry.timed_audit(write_audit(services, record))


_Recording = asyncio.Task["Appended | None"]  # the request record being made durable


def _drop(recording: _Recording) -> None:
    """Give up on a request record: cancel it if pending (the audit writer shields the
    commit it shares with others), and retrieve its outcome so none is "never retrieved"."""
    if not recording.done():
        recording.cancel()
    recording.add_done_callback(_failed)


def _failed(task: asyncio.Task[Any]) -> bool:
    return task.done() and (task.cancelled() or task.exception() is not None)


async def _abort(opening: asyncio.Task[UpstreamAnswer]) -> None:
    """Stop the engine wherever it got to: cancel the request, or close its answer
    unread (vLLM aborts a request whose connection closes)."""
    opening.cancel()
    with anyio.CancelScope(shield=True):
        await asyncio.wait((opening,))
        if not _failed(opening):
            await opening.result().aclose()


async def _record(
    recording: _Recording, open_upstream: Callable[[], Awaitable[UpstreamAnswer]] | None
) -> tuple[Appended | None, asyncio.Task[UpstreamAnswer] | None]:
    """Where the request record went in, once durable, and (given ``open_upstream``)
    the engine's answer, opened meanwhile, to await only then: a failed record wins over
    its error. A record that cannot be made durable (it failed, the client left) aborts it."""
    opening = None
    try:
        if open_upstream is not None:
            await asyncio.sleep(0)  # a record failing at once (no writer) reaches no engine
            if not _failed(recording):
                opening = asyncio.ensure_future(open_upstream())
        return await recording, opening
    except BaseException:
        _drop(recording)
        if opening is not None:
            await _abort(opening)
        raise


def _observe(
    services: GatewayServices,
    request: Request,
    context: RequestContext,
    path: str,
    model: str,
    payload: dict[str, Any],
) -> RequestObservation | None:
    """Start the request's span and in-flight metrics (no content goes in either)."""
    if services.telemetry is None:
        return None
    cap = (
        payload.get("max_completion_tokens")
        or payload.get("max_tokens")
        or payload.get("max_output_tokens")
    )
    return services.telemetry.request(
        path=path,
        model=model,
        request_id=context.request_id,
        headers=request.headers,
        stream=bool(payload.get("stream")),
        max_tokens=cap if isinstance(cap, int) and not isinstance(cap, bool) else None,
    )


def _used_tokens(outcome: Outcome, usage: Usage | None) -> int | None:
    """Tokens to settle a lease on: the engine's count; unknown after an answer was
    (maybe partly) generated keeps the reservation; an engine failure refunds it."""
    if usage is not None and (usage.prompt_tokens is not None or usage.completion_tokens):
        return (usage.prompt_tokens or 0) + (usage.completion_tokens or 0)
    if outcome in (Outcome.OK, Outcome.CLIENT_DISCONNECTED):
        return None
    return 0


def _with_usage_requested(payload: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Ask the engine for a usage chunk if the client did not; say whether we did."""
    options = payload.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        return payload, False
    forwarded = dict(payload)
    forwarded["stream_options"] = {**(options or {}), "include_usage": True}
    return forwarded, True


async def forward(
    request: Request,
    *,
    services: GatewayServices,
    principal: Principal,
    context: RequestContext,
    payload: dict[str, Any],
    parsed: OpenAIRequest,
    path: str,
    dialect: Dialect,
    destination: Destination | None = None,
) -> Response:
    """Admit (limits), record the request, relay the destination's answer, record it."""
    settings = services.settings
    target: Destination = destination or EngineDestination(services)
    reserve = reserve_tokens(payload, parsed, settings.limits.default_max_tokens)
    lease, forwarded = await _admit(
        services, principal, payload, reserve, engine_priority=target.engine_priority
    )
    try:
        await target.reserve()
    except BaseException:
        if lease is not None:
            await lease.settle(0)
        raise
    if parsed.stream and dialect.asks_usage:
        forwarded, strip_usage = _with_usage_requested(forwarded)
    else:
        strip_usage = False
    observed = _observe(services, request, context, path, parsed.model, payload)
    open_upstream = partial(
        target.open, parsed.model, path, forwarded, request_id=context.request_id,
        headers=observed.outgoing_headers() if observed is not None else None,
    )  # fmt: skip
    # Fail closed: no byte of an answer before the request record is durable; only an
    # in-house engine (overlaps_audit) starts on the request meanwhile.
    try:
        record = audit_record(
            services, request, context,
            event=target.request_event, status_code=0, outcome=Outcome.ACCEPTED,
            content=target.request_content(dialect.request_content(payload)),
        )  # fmt: skip
        recording = asyncio.get_running_loop().create_task(_timed_write_audit(services, record))
        overlap = open_upstream if target.overlaps_audit else None
        request_leaf, opening = await _record(recording, overlap)
    except BaseException:
        if lease is not None:
            await lease.settle(0)
        await target.settle(Outcome.UPSTREAM_ERROR, None)
        if observed is not None:
            observed.finish("audit_unavailable", 503)
        raise
    context.admitted = True

    async def finish(
        outcome: Outcome, usage: Usage | None, status: int, answer: Answer | None = None
    ) -> str | None:
        """Settle, observe, and write the completion record; the receipt of an answer."""
        if lease is not None:
            await lease.settle(_used_tokens(outcome, usage))
        settled = await target.settle(outcome, usage)
        if observed is not None:
            observed.finish(
                outcome.value,
                status,
                usage.prompt_tokens if usage else None,
                usage.completion_tokens if usage else None,
            )
        content = answer_content(answer)
        extra = target.answer_extra()
        if extra:
            content = {**(content or {}), **extra}
        record = audit_record(
            services, request, context,
            event=AuditEvent.COMPLETION, status_code=status, outcome=outcome,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            content=content, extra_params={**(answer_params(answer) or {}), **settled},
        )  # fmt: skip
        commitment = None
        if outcome is Outcome.OK:  # only an answer gets a receipt, so only it a commitment
            record, commitment = with_answer_commitment(record)
        completion_leaf = await _timed_write_audit(services, record)
        if outcome is not Outcome.OK:
            return None
        return issue_receipt(
            services, context.request_id, request_leaf, completion_leaf, commitment
        )

    try:
        upstream = await (opening if opening is not None else open_upstream())
    except ApplianceError as error:
        await finish(Outcome.UPSTREAM_ERROR, None, error.status_code)
        raise

    if upstream.status_code != 200:
        try:
            body = await upstream.aread()
        finally:
            await upstream.aclose()
        refused = target.refusal(parsed.model, path, upstream, body)
        outcome = Outcome.INVALID if refused.status_code < 500 else Outcome.UPSTREAM_ERROR
        await finish(outcome, None, refused.status_code)
        raise refused

    media_type = upstream.headers.get("content-type", "application/json")
    if not parsed.stream:
        try:
            body = await upstream.aread()
        except ApplianceError as error:
            await finish(Outcome.UPSTREAM_ERROR, None, error.status_code)
            raise
        finally:
            await upstream.aclose()
        try:
            answer = json.loads(body)
        except ValueError as exc:
            await finish(Outcome.UPSTREAM_ERROR, None, 502)
            raise UpstreamError(f"the engine for {parsed.model} sent an unreadable answer") from exc
        body_json = answer if isinstance(answer, dict) else None
        receipt = await finish(Outcome.OK, dialect.usage(body_json), 200, dialect.answer(body_json))
        headers = {RECEIPT_HEADER: receipt} if receipt is not None else None
        return Response(content=body, status_code=200, media_type=media_type, headers=headers)

    # RelayResponse settles the lease even if the client leaves before the first byte.
    return RelayResponse(
        StreamRelay(
            upstream,
            model=parsed.model,
            strip_usage_chunk=strip_usage,
            on_finish=finish,
            on_first_chunk=observed.first_chunk if observed is not None else None,
            events=dialect.events(),
        ),
        media_type=media_type,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
