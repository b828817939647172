"""A request for an external model (``<upstream>@<provider>``): classify, decide, and
either refuse, route in-house, or send what may leave (issue #17, docs/hybrid.md).

The chain: **classify** every string of the body once (:mod:`appliance.gateway.egress_body`)
→ **decide** (:func:`appliance.egress.decision.decide`: access, labels, ceiling) →
block (403, ``request.denied``), route to the in-house fallback model, or **relay**
through :class:`ProviderDestination`: reserve the team's budget (429 when spent), write
``egress.request`` (metadata: the decision; sealed: what the caller sent and what is
sent), send the pseudonymised body, re-identify the answer, settle the cost into the
completion record. Every record of the request carries ``params.egress``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from fnmatch import fnmatchcase
from typing import Any

import anyio.to_thread
from fastapi import Request

from appliance.audit.records import AuditEvent, Outcome
from appliance.config import ClassificationSettings, Settings
from appliance.egress.budget import BudgetLease, EgressBudget
from appliance.egress.decision import (
    Caller,
    EgressDecision,
    Verdict,
    decide,
    declared_labels,
    without_label,
)
from appliance.egress.levels import Classification
from appliance.egress.placeholders import PlaceholderMap
from appliance.egress.pseudonymise import Pseudonymiser
from appliance.egress.scanner import Scanner
from appliance.errors import ApplianceError, InvalidRequest, PermissionDenied, RateLimited
from appliance.gateway.answers import AnswerStream, answer_texts
from appliance.gateway.auditing import request_content
from appliance.gateway.context import RequestContext
from appliance.gateway.egress_body import (
    StreamReidentifier,
    pseudonymise_body,
    reidentify_answer,
    request_texts,
    unscannable_parts,
)
from appliance.gateway.providers import ProviderClient, ProviderClients, provider_refusal
from appliance.gateway.schemas import OpenAIRequest
from appliance.gateway.sse import SseSplitter, Usage, parse_event_json
from appliance.gateway.upstream import UpstreamAnswer
from appliance.identity.policy import caller_teams
from appliance.identity.principal import Principal
from appliance.limits.rules import reservation
from appliance.settings.egress import ProviderSettings

__all__ = ["EgressServices", "ExternalPlan", "ProviderDestination", "plan_external"]

# The only API external providers are offered for: the one all three speak alike.
EXTERNAL_PATH = "/v1/chat/completions"


@dataclass
class EgressServices:
    """What a gateway with external providers holds: their clients, the content
    scanner, and the budget store."""

    clients: ProviderClients
    scanner: Scanner
    budget: EgressBudget

    def provider_of(self, model: str) -> ProviderSettings | None:
        return self.clients.provider_of(model)

    async def aclose(self) -> None:
        await self.clients.aclose()
        await self.budget.store.aclose()


@dataclass(frozen=True)
class ExternalPlan:
    """What happens to the request: ``destination`` None means routed in-house, with
    ``payload``/``parsed`` naming the fallback model; else sent as ``payload``."""

    payload: dict[str, Any]
    parsed: OpenAIRequest
    destination: ProviderDestination | None


def _classify(
    scanner: Scanner,
    provider: ProviderSettings,
    caller: Caller,
    declared: tuple[object, ...],
    classification: ClassificationSettings,
    body: dict[str, Any],
) -> EgressDecision:
    findings = [f for text in request_texts(body) for f in scanner.scan(text).findings]
    decision = decide(provider, caller, declared, classification, findings)
    unscannable = unscannable_parts(body)
    if unscannable and decision.leaves and provider.classification < Classification.RESTRICTED:
        # Fail closed: an image or a file cannot be read, so it cannot be classified.
        message = (
            f"the request holds {', '.join(unscannable)} parts, which cannot be scanned; "
            f"only a provider cleared for restricted data may receive them"
        )
        return replace(
            decision, verdict=Verdict.BLOCK, rule="content.unscannable", message=message,
            sent_classification=None, threshold=None,
        )  # fmt: skip
    return decision


def _pseudonymised(
    scanner: Scanner, decision: EgressDecision, body: dict[str, Any]
) -> tuple[dict[str, Any], PlaceholderMap]:
    if decision.verdict is not Verdict.PSEUDONYMISE or decision.threshold is None:
        return body, PlaceholderMap({})
    return pseudonymise_body(body, Pseudonymiser(scanner, threshold=decision.threshold))


async def plan_external(
    request: Request,
    *,
    egress: EgressServices,
    principal: Principal,
    context: RequestContext,
    payload: dict[str, Any],
    parsed: OpenAIRequest,
    provider: ProviderSettings,
    path: str,
    settings: Settings,
    clock: Callable[[], datetime],
) -> ExternalPlan:
    """Decide; raise the 403 of a block; plan the route or the relay."""
    if path != EXTERNAL_PATH:
        raise InvalidRequest(
            f"model {parsed.model} is an external provider's: it serves {EXTERNAL_PATH} only",
            param="model",
        )
    globs = principal.model_globs
    if globs is not None and not any(fnmatchcase(parsed.model, glob) for glob in globs):
        # A key restricted to some models is restricted for external ones too.
        raise PermissionDenied(
            f"this credential is restricted and may not use model {parsed.model!r}"
        )
    teams = caller_teams(principal, settings.oidc.team_group_prefix)
    caller = Caller(teams, principal.roles, principal.team)
    body = without_label(payload)
    # The scan costs about 20 ms per 32 KiB: off the event loop, with everyone else's.
    decision = await anyio.to_thread.run_sync(
        _classify,
        egress.scanner, provider, caller, declared_labels(request.headers, payload),
        settings.classification, body,
    )  # fmt: skip
    context.params = {**(context.params or {}), "egress": decision.to_audit()}
    if decision.verdict is Verdict.BLOCK:
        raise decision.as_error()
    if decision.verdict is Verdict.ROUTE:
        fallback = str(decision.fallback_model)
        context.model = fallback
        return ExternalPlan(
            {**body, "model": fallback}, parsed.model_copy(update={"model": fallback}), None
        )
    sent = {**body, "model": provider.upstream_model(parsed.model)}
    sent, mapping = await anyio.to_thread.run_sync(_pseudonymised, egress.scanner, decision, sent)
    destination = ProviderDestination(
        egress.clients.client(provider.name),
        decision,
        mapping,
        budget=egress.budget,
        context=context,
        received_from=request_content(payload),
        reserve_tokens=reservation(sent, settings.limits.default_max_tokens),
        clock=clock,
    )
    return ExternalPlan(sent, parsed, destination)


class _Reidentified:
    """A provider's answer with the originals put back, whole or streamed; it keeps
    what the provider sent (``received``) for the sealed audit content."""

    def __init__(self, inner: UpstreamAnswer, mapping: PlaceholderMap) -> None:
        self._inner = inner
        self._mapping = mapping
        self.received: AnswerStream | dict[str, Any] | None = None

    @property
    def status_code(self) -> int:
        return self._inner.status_code

    @property
    def headers(self) -> Mapping[str, str]:
        return self._inner.headers

    async def aread(self) -> bytes:
        body = await self._inner.aread()
        if self.status_code != 200:
            return body
        try:
            parsed = json.loads(body)
        except ValueError:
            return body  # the relay answers 502 for it
        self.received = parsed if isinstance(parsed, dict) else None
        return reidentify_answer(body, self._mapping)

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        splitter = SseSplitter()
        restore = StreamReidentifier(self._mapping)
        received = self.received = AnswerStream()
        async for chunk in self._inner.aiter_raw():
            events = splitter.feed(chunk)
            for event in events:
                received.add(parse_event_json(event))
            out = b"".join(restore.event(event) for event in events)
            if out:
                yield out
        tail = splitter.pending()
        last = restore.end() + (restore.event(tail) if tail else b"")
        if last:
            yield last

    async def aclose(self) -> None:
        await self._inner.aclose()


class ProviderDestination:
    """One request's way to an external provider (a relay :class:`Destination`)."""

    request_event = AuditEvent.EGRESS_REQUEST
    engine_priority = False
    # Nothing leaves the premises before its request record is durable.
    overlaps_audit = False

    def __init__(
        self,
        client: ProviderClient,
        decision: EgressDecision,
        mapping: PlaceholderMap,
        *,
        budget: EgressBudget,
        context: RequestContext,
        received_from: dict[str, Any],
        reserve_tokens: int,
        clock: Callable[[], datetime],
    ) -> None:
        self._client = client
        self._provider = client.provider
        self._decision = decision
        self._mapping = mapping
        self._budget = budget
        self._context = context
        self._caller_content = received_from
        self._reserve_tokens = reserve_tokens
        self._clock = clock
        self._lease: BudgetLease | None = None
        self._answer: _Reidentified | None = None

    def request_content(self, sent: dict[str, Any]) -> dict[str, Any]:
        return {"request": self._caller_content, "sent": sent}

    async def reserve(self) -> None:
        team = self._decision.team
        assert team is not None  # an allowed decision always names the team it charges
        try:
            # The whole reservation may be answer: price it at the output rate too.
            self._lease = await self._budget.reserve(
                self._provider, team, prompt_tokens=self._reserve_tokens,
                max_completion_tokens=self._reserve_tokens, now=self._clock(),
            )  # fmt: skip
        except RateLimited:
            egress = dict((self._context.params or {}).get("egress") or {})
            self._context.params = {**(self._context.params or {}),
                                    "egress": {**egress, "budget": "exceeded"}}  # fmt: skip
            raise

    async def open(
        self,
        model: str,
        path: str,
        payload: dict[str, Any],
        *,
        request_id: str,
        headers: Mapping[str, str] | None,
    ) -> UpstreamAnswer:
        # No client header and no trace context leaves the premises.
        answer = await self._client.open(path.removeprefix("/v1"), payload)
        if not self._mapping:
            return answer
        self._answer = _Reidentified(answer, self._mapping)
        return self._answer

    def refusal(self, model: str, path: str, answer: UpstreamAnswer, body: bytes) -> ApplianceError:
        upstream = self._provider.upstream_model(model)
        return provider_refusal(
            self._provider.name, upstream, answer.status_code, body, answer.headers
        )

    async def settle(self, outcome: Outcome, usage: Usage | None) -> dict[str, Any]:
        lease, self._lease = self._lease, None
        if lease is None:
            return {}
        now = self._clock()
        known = usage is not None and usage.prompt_tokens is not None
        if known and usage is not None:
            spent = await lease.settle(usage.prompt_tokens, usage.completion_tokens or 0, now=now)
        elif outcome in (Outcome.OK, Outcome.CLIENT_DISCONNECTED):
            spent = await lease.settle(None, None, now=now)  # unknown: the estimate stays
        else:
            await lease.release(now=now)
            return {}
        egress = {**self._decision.to_audit(), "currency": self._provider.currency,
                  "cost": None if spent is None else str(spent)}  # fmt: skip
        return {"egress": egress}

    def answer_extra(self) -> dict[str, Any]:
        if self._answer is None or self._answer.received is None:
            return {}
        received = self._answer.received
        if isinstance(received, AnswerStream):
            return {"received": received.answer().texts}
        return {"received": answer_texts(received)}
