"""The compliance API: checkpoints for witnesses, search, proofs, audited reading.

Every route needs the role ``appliance-auditor``, except ``GET /audit/checkpoint`` and
``GET /audit/consistency``, which an outside witness or monitor (role
``appliance-witness``) may also fetch: to keep copies of checkpoints, and to check that
each new one extends the last it kept.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from appliance.audit.access import inclusion_proof_for, record_act, reveal, search_details
from appliance.audit.consistency import consistency_proof_for
from appliance.audit.key_history import read_key_history
from appliance.audit.receipt_proofs import receipt_proof
from appliance.audit.records import AuditEvent, metadata_of
from appliance.audit.store import SearchFilter, StoredEntry
from appliance.errors import ModelNotFound
from appliance.gateway.audit_access import audit_log_of, request_actor
from appliance.gateway.deps import AuditDep, PrincipalDep, ServicesDep, require_role
from appliance.identity.principal import Principal
from appliance.identity.roles import Role

__all__ = ["router"]

router = APIRouter(prefix="/audit", tags=["audit"])

AUDITOR = Role.AUDITOR
WITNESS = Role.WITNESS
AuditorDep = Annotated[Principal, require_role(AUDITOR)]
WitnessDep = Annotated[Principal, require_role(AUDITOR, WITNESS)]


class RevealRequest(BaseModel):
    reason: str = Field(min_length=3, max_length=500)


def _entry(stored: StoredEntry) -> dict[str, Any]:
    entry = stored.entry
    return {
        "index": entry.index,
        **metadata_of(entry.record),
        "content": None
        if entry.content_sha256 is None
        else {"key": entry.content_key_id, "sha256": entry.content_sha256.hex()},
    }


@router.get("/checkpoint", response_class=PlainTextResponse, summary="Latest signed checkpoint")
async def latest_checkpoint(_principal: WitnessDep, store: AuditDep) -> PlainTextResponse:
    checkpoint = await anyio.to_thread.run_sync(store.latest_checkpoint)
    if checkpoint is None:
        raise ModelNotFound("no checkpoint has been signed yet", code="no_checkpoint")
    # With the witnesses' cosignatures, as one C2SP signed note.
    lines = await anyio.to_thread.run_sync(store.cosignatures, checkpoint.tree_size)
    note = checkpoint.note + "".join(f"{line}\n" for line in lines)
    return PlainTextResponse(note, media_type="text/plain; charset=utf-8")


@router.get("/keys", summary="The log's checkpoint keys and the tree sizes each signs")
async def key_history(_principal: WitnessDep, services: ServicesDep) -> dict[str, Any]:
    """The key history (appliance.audit.key_history): a key changed when the log's keys
    moved into an HSM; the first checkpoint under a new key is signed by both."""
    log = audit_log_of(services)
    history = await anyio.to_thread.run_sync(read_key_history, log.store.engine, log.verifier)
    return {"origin": log.origin, "keys": [epoch.describe() for epoch in history.epochs]}


@router.get("/consistency", summary="Consistency proof between two tree sizes")
async def consistency_proof(
    _principal: WitnessDep,
    services: ServicesDep,
    store: AuditDep,
    old_size: Annotated[int, Query(alias="from", description="The older, smaller tree size")],
    new_size: Annotated[
        int | None,
        Query(alias="to", description="The newer tree size; default: the latest checkpoint's"),
    ] = None,
) -> dict[str, Any]:
    """RFC 6962 §2.1.2 proof that the tree of ``to`` records extends the tree of
    ``from``, with both roots and the signed checkpoints at those sizes (or null)."""
    log = audit_log_of(services)
    return await anyio.to_thread.run_sync(
        lambda: consistency_proof_for(
            store, old_size, new_size, origin=log.origin, verifier=log.verifier
        )
    )


@router.post("/checkpoint", response_class=PlainTextResponse, summary="Sign a checkpoint now")
async def sign_checkpoint_now(
    _principal: AuditorDep, services: ServicesDep, store: AuditDep
) -> PlainTextResponse:
    log = audit_log_of(services)
    await anyio.to_thread.run_sync(log.checkpoint)
    checkpoint = await anyio.to_thread.run_sync(store.latest_checkpoint)
    if checkpoint is None:
        raise ModelNotFound("the log is empty", code="no_checkpoint")
    return PlainTextResponse(checkpoint.note, media_type="text/plain; charset=utf-8")


@router.get("/records", summary="Search record metadata (never content)")
async def search_records(
    principal: AuditorDep,
    store: AuditDep,
    services: ServicesDep,
    request: Request,
    subject: str | None = None,
    username: str | None = None,
    team: str | None = None,
    model: str | None = None,
    event: str | None = None,
    outcome: str | None = None,
    request_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    denials: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    where = SearchFilter(
        subject=subject, username=username, team=team, model=model, event=event,
        outcome=outcome, request_id=request_id, since=since, until=until,
        denials_only=denials, limit=limit,
    )  # fmt: skip
    log = audit_log_of(services)
    actor = request_actor(principal, request)

    def run() -> list[StoredEntry]:
        record_act(
            log, actor, AuditEvent.AUDIT_SEARCH, search_details(where),
            path="GET /audit/records", method="GET",
        )  # fmt: skip
        return store.search(where)

    found = await anyio.to_thread.run_sync(run)
    return {"records": [_entry(item) for item in found]}


@router.get("/records/{record_id}/proof", summary="Inclusion proof against the latest checkpoint")
async def record_proof(
    record_id: str, _principal: AuditorDep, services: ServicesDep, store: AuditDep
) -> dict[str, Any]:
    log = audit_log_of(services)
    return await anyio.to_thread.run_sync(
        lambda: inclusion_proof_for(store, record_id, origin=log.origin, verifier=log.verifier)
    )


@router.get("/receipts/{request_id}/proof", summary="Prove a receipt: your answer is in the log")
async def receipt_proof_route(
    request_id: str,
    principal: PrincipalDep,
    services: ServicesDep,
    store: AuditDep,
    since: Annotated[int | None, Query(description="A checkpoint size you hold")] = None,
    index: Annotated[
        int | None,
        Query(
            ge=0,
            description="The completion leaf index your receipt names (if one "
            "request id served several requests)",
        ),
    ] = None,
) -> dict[str, Any]:
    """Inclusion proofs of the receipt's two leaves (the request and the answer, as
    sealed) to the latest signed checkpoint, and a consistency proof from ``since``.
    Any caller, for their own requests; auditors for all. Another caller's request is
    403 ``receipt_forbidden``, written to the log as a denial by the error handler."""
    log = audit_log_of(services)
    subject = None if principal.has_role(AUDITOR) else principal.subject
    return await anyio.to_thread.run_sync(
        lambda: receipt_proof(
            store, request_id, origin=log.origin, verifier=log.verifier, subject=subject,
            since=since, completion_index=index,
        )
    )  # fmt: skip


@router.post("/records/{record_id}/reveal", summary="Decrypt content (recorded, with reason)")
async def reveal_record(
    record_id: str,
    body: RevealRequest,
    principal: AuditorDep,
    services: ServicesDep,
    request: Request,
) -> dict[str, Any]:
    log = audit_log_of(services)
    actor = request_actor(principal, request)
    shown = await anyio.to_thread.run_sync(
        lambda: reveal(log, record_id, actor=actor, reason=body.reason, via="POST /audit/reveal")
    )
    return {
        "index": shown.index,
        **metadata_of(shown.record),
        "content_status": shown.status,
        "content": shown.content,
    }
