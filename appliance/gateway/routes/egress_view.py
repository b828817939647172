"""The compliance console's egress view (issue #17): what left for external providers,
per team and provider (:mod:`appliance.audit.egress_report`), and the records behind
each line for drill-down, which the console's reveal-with-reason opens.

Auditors only, like the console's other panels; each view is recorded (audit.search)
before the log is read. Metadata only: no content is decrypted here. Included in the
console router (``routes/console.py``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Query, Request

from appliance.audit.access import record_act
from appliance.audit.egress_report import EGRESS_EVENTS, is_external, line_key, summarise
from appliance.audit.records import AuditEvent, AuditRecord, format_time, metadata_of
from appliance.audit.store import SearchFilter, StoredEntry
from appliance.gateway.audit_access import audit_log_of, request_actor
from appliance.gateway.deps import AuditDep, ServicesDep, require_role
from appliance.identity.principal import Principal
from appliance.identity.roles import Role

__all__ = ["router"]

router = APIRouter(tags=["ui"], include_in_schema=False)

AuditorDep = Annotated[Principal, require_role(Role.AUDITOR)]


def _egress_entry(stored: StoredEntry) -> dict[str, Any]:
    """A record as ``GET /audit/records`` lists it (so the console's detail and
    reveal-with-reason open it), with the team and provider it counts under."""
    entry = stored.entry
    team, provider = line_key(entry.record)
    return {
        "index": entry.index,
        **metadata_of(entry.record),
        "content": None
        if entry.content_sha256 is None
        else {"key": entry.content_key_id, "sha256": entry.content_sha256.hex()},
        "egress_team": team,
        "egress_provider": provider,
    }


@router.get("/egress")
async def egress(
    principal: AuditorDep,
    services: ServicesDep,
    store: AuditDep,
    request: Request,
    since: datetime | None = None,
    until: datetime | None = None,
    team: str | None = None,
    provider: str | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> dict[str, Any]:
    """External calls (issue #17) in ``[since, until)``: the summary per team and
    provider (:mod:`appliance.audit.egress_report`) and, for drill-down, the last
    ``limit`` of their records (metadata only, in log order); ``team`` and
    ``provider`` narrow both. Recorded as a search first, like every read of the log."""
    log = audit_log_of(services)
    actor = request_actor(principal, request)
    # A time without a zone is UTC, as everywhere in the console.
    since = since.replace(tzinfo=UTC) if since and since.tzinfo is None else since
    until = until.replace(tzinfo=UTC) if until and until.tzinfo is None else until
    details: dict[str, Any] = {"egress": True}
    details |= {"since": format_time(since)} if since else {}
    details |= {"until": format_time(until)} if until else {}
    details |= {k: v for k, v in (("team", team), ("provider", provider)) if v is not None}
    kept: deque[StoredEntry] = deque(maxlen=limit)

    def matching() -> Iterator[AuditRecord]:
        pages = store.iter_search(SearchFilter(since=since, until=until), events=EGRESS_EVENTS)
        for page in pages:
            for stored in page:
                record = stored.entry.record
                if not is_external(record):
                    continue
                key = line_key(record)
                if (team is None or key[0] == team) and (provider is None or key[1] == provider):
                    kept.append(stored)
                    yield record

    def run() -> dict[str, Any]:
        record_act(
            log, actor, AuditEvent.AUDIT_SEARCH, details,
            path="GET /ui/api/audit/egress", method="GET",
        )  # fmt: skip
        summary = summarise(matching())
        return {
            "summary": summary.as_dict(),
            "records": [_egress_entry(stored) for stored in kept],
            "truncated": summary.records > len(kept),
        }

    return await anyio.to_thread.run_sync(run)
