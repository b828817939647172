"""How far the SIEM forwarder (``appliance audit forward``) trails the audit log.

A logging failure is itself an event (DORA RTS 2024/1774 Art. 12): the forwarder is
its own process, so the gateway reads its cursor (the ``audit_forward_cursor`` row of
the configured destination, :mod:`appliance.audit.forward_cursor`) and the log's size
from the database when Prometheus scrapes ``/metrics`` and when the console asks,
rather than trusting the forwarder to report its own failure. Every replica on every
host sees the same row. A forwarder that died,
hangs or cannot reach the SIEM stops moving its cursor; the records behind and the
seconds since its last delivery then grow.

:func:`forward_status` is pure (values in, a value out); :func:`read_forward_status`
is the I/O around it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy.exc import SQLAlchemyError

from appliance.audit.forward_cursor import Cursor, CursorStore, cursor_key
from appliance.audit.store import SqlAuditStore
from appliance.config import Settings

__all__ = ["ForwardState", "ForwardStatus", "forward_status", "read_forward_status"]

ForwardState = Literal["off", "up_to_date", "behind", "error"]


@dataclass(frozen=True)
class ForwardStatus:
    """``behind`` records of ``log_size`` are not yet delivered; ``delivered_at`` is
    when the SIEM last took a batch (None: never, as far as the cursor tells)."""

    state: ForwardState
    log_size: int
    behind: int
    delivered_at: datetime | None
    problem: str | None = None

    def age_s(self, now: datetime) -> float:
        """Seconds since the last delivery; infinite when there never was one."""
        if self.delivered_at is None:
            return math.inf
        return max(0.0, (now - self.delivered_at).total_seconds())

    def as_dict(self, now: datetime) -> dict[str, object]:
        """For the console (JSON): no infinity, None instead."""
        age = self.age_s(now)
        return {
            "state": self.state,
            "log_size": self.log_size,
            "behind": self.behind,
            "delivered_at": self.delivered_at.astimezone(UTC).isoformat()
            if self.delivered_at
            else None,
            "seconds_since_delivery": None if math.isinf(age) else round(age, 3),
            "problem": self.problem,
        }


def forward_status(
    *, enabled: bool, log_size: int, cursor: Cursor | None, problem: str | None = None
) -> ForwardStatus:
    """The forwarder's state from what is known: whether ``audit.forward`` is set, the
    log's size and the cursor (None: none saved yet or unreadable, see ``problem``)."""
    if not enabled:
        return ForwardStatus("off", log_size, 0, None)
    next_index = cursor.next_index if cursor is not None else 0
    delivered_at = cursor.delivered_at if cursor is not None else None
    behind = max(0, log_size - next_index)
    if problem is not None:
        return ForwardStatus("error", log_size, behind, delivered_at, problem)
    return ForwardStatus("behind" if behind else "up_to_date", log_size, behind, delivered_at)


def read_forward_status(settings: Settings, store: SqlAuditStore) -> ForwardStatus:
    """Read the cursor row and the log's size (blocking I/O: call from a thread)."""
    enabled = bool(settings.audit.forward.host)
    log_size = 0
    problem = None
    try:
        log_size = store.size()
    except SQLAlchemyError as exc:
        problem = f"cannot read the audit log: {type(exc).__name__}"
    cursor = None
    if enabled:
        cursors = CursorStore(store.engine, cursor_key(settings), settings.audit.origin)
        try:
            cursor = cursors.load()
        except SQLAlchemyError as exc:
            problem = f"cannot read the forwarder's cursor: {type(exc).__name__}"
    return forward_status(enabled=enabled, log_size=log_size, cursor=cursor, problem=problem)
