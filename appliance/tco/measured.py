"""A month's measured usage from the audit log: the prompt and completion tokens of its
``inference.completion`` records, grouped by hour. The I/O shell of
:func:`appliance.tco.costs.total_usage` and :func:`appliance.tco.chart.chart_figures`."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import Engine, select

from appliance.audit.records import AuditEvent
from appliance.db.tables import audit_log
from appliance.tco.chart import CompletionRow
from appliance.tco.costs import Usage, total_usage

__all__ = ["month_bounds", "month_completions", "month_usage"]


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """``YYYY-MM`` -> its first instant and the next month's, UTC; ValueError if odd."""
    start = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    following = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else (start.replace(month=start.month + 1))
    )
    return start, following


def _hour(value: datetime) -> str:
    at = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return at.strftime("%Y-%m-%dT%H:00Z")


def month_usage(engine: Engine, month: str) -> Usage:
    """Tokens served in ``month`` (UTC), from the clear-text metadata only."""
    start, end = month_bounds(month)
    c = audit_log.c
    query = select(c.recorded_at, c.prompt_tokens, c.completion_tokens).where(
        c.event == AuditEvent.COMPLETION.value, c.recorded_at >= start, c.recorded_at < end
    )
    with engine.connect() as connection:
        rows = [
            (_hour(row.recorded_at), row.prompt_tokens, row.completion_tokens)
            for row in connection.execute(query)
        ]
    return total_usage(month, rows)


def _recorded_cost(params: Mapping[str, Any] | None) -> tuple[Decimal | None, str | None]:
    """``params["egress"]["cost"]`` and ``["currency"]``; (None, None) when absent or
    not a decimal (a record is evidence: an odd one is left out of Y, not fatal)."""
    egress = (params or {}).get("egress")
    if not isinstance(egress, Mapping):
        return None, None
    cost, currency = egress.get("cost"), egress.get("currency")
    if not isinstance(cost, str | int) or not isinstance(currency, str):
        return None, None
    try:
        amount = Decimal(cost)
    except InvalidOperation:
        return None, None
    return (amount, currency) if amount.is_finite() else (None, None)


def month_completions(engine: Engine, month: str) -> list[CompletionRow]:
    """``month``'s completion records (UTC) with model and recorded external cost."""
    start, end = month_bounds(month)
    c = audit_log.c
    query = select(c.recorded_at, c.model, c.prompt_tokens, c.completion_tokens, c.params).where(
        c.event == AuditEvent.COMPLETION.value, c.recorded_at >= start, c.recorded_at < end
    )
    with engine.connect() as connection:
        return [
            CompletionRow(
                _hour(row.recorded_at),
                row.model,
                row.prompt_tokens,
                row.completion_tokens,
                *_recorded_cost(row.params),
            )
            for row in connection.execute(query)
        ]
