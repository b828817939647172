"""Audit records of calls to external models, in the shape the gateway writes them
(issue #17): one list per call, for each verdict and for a budget refusal."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from appliance.audit.records import AuditEvent, AuditRecord, Outcome
from tests.support.audit import T0, make_record

__all__ = ["KINDS", "decision", "external_call", "inhouse_call"]

# Every way an external call ends up in the log.
KINDS = ("allow", "pseudonymise", "route", "block", "budget")


def decision(
    *, provider: str, team: str, verdict: str, detectors: dict[str, int] | None = None
) -> dict[str, Any]:
    """``EgressDecision.to_audit()``'s keys, with plausible values."""
    return {
        "provider": provider,
        "team": team,
        "verdict": verdict,
        "rule": f"rule-{verdict}",
        "classification": "internal",
        "classification_sources": {"header": "internal"},
        "decided_by": ["header"],
        "detectors": dict(detectors or {}),
        "refused_detectors": [],
        "sent_classification": "public" if verdict == "pseudonymise" else None,
        "fallback_model": "fake-model" if verdict == "route" else None,
    }


def external_call(
    kind: str,
    request_id: str,
    *,
    team: str = "radiology",
    provider: str = "openai",
    at: datetime = T0,
    detectors: dict[str, int] | None = None,
    tokens: tuple[int, int] = (11, 7),
    cost: str = "0.0123",
    currency: str = "EUR",
) -> list[AuditRecord]:
    """The records one call of ``kind`` (:data:`KINDS`) leaves, a second apart."""
    verdict = {"budget": "allow"}.get(kind, kind)
    egress = decision(provider=provider, team=team, verdict=verdict, detectors=detectors)
    model = f"gpt-4.1@{provider}"
    common: dict[str, Any] = {
        "subject": "apikey:alice", "username": "alice", "team": team, "model": model,
    }  # fmt: skip
    question = {"messages": [{"role": "user", "content": f"question {request_id}"}]}
    if kind in ("block", "budget"):
        if kind == "budget":
            egress["budget"] = "exceeded"
        return [
            make_record(
                request_id, at=at, event=AuditEvent.DENIED, outcome=Outcome.DENIED,
                status_code=403 if kind == "block" else 429, params={"egress": egress},
                denial_reason=f"egress {kind}", **common,
            )
        ]  # fmt: skip
    later = at + timedelta(seconds=1)
    if kind == "route":
        common["model"] = egress["fallback_model"]
        return [
            make_record(
                request_id, at=at, event=AuditEvent.REQUEST, params={"egress": egress},
                content=question, **common,
            ),
            make_record(
                request_id, at=later, event=AuditEvent.COMPLETION, outcome=Outcome.OK,
                params={"egress": egress}, prompt_tokens=tokens[0], completion_tokens=tokens[1],
                content={"answer": "in-house"}, **common,
            ),
        ]  # fmt: skip
    sent = {"request": question, "sent": question}
    return [
        make_record(
            request_id, at=at, event=AuditEvent.EGRESS_REQUEST, params={"egress": egress},
            content=sent, **common,
        ),
        make_record(
            request_id, at=later, event=AuditEvent.COMPLETION, outcome=Outcome.OK,
            params={"egress": {**egress, "cost": cost, "currency": currency}},
            prompt_tokens=tokens[0], completion_tokens=tokens[1],
            content={"answer": "from outside", "received": "from outside"}, **common,
        ),
    ]  # fmt: skip


def inhouse_call(
    request_id: str, *, team: str = "radiology", at: datetime = T0
) -> list[AuditRecord]:
    """An ordinary request to an in-house model: no egress decision."""
    common: dict[str, Any] = {
        "subject": "apikey:alice", "username": "alice", "team": team, "model": "fake-model",
        "params": {"temperature": 0.2},
    }  # fmt: skip
    return [
        make_record(request_id, at=at, event=AuditEvent.REQUEST, content={"q": 1}, **common),
        make_record(
            request_id, at=at + timedelta(seconds=1), event=AuditEvent.COMPLETION,
            outcome=Outcome.OK, prompt_tokens=5, completion_tokens=5, content={"a": 1}, **common,
        ),
    ]  # fmt: skip
