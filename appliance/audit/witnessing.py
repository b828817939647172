"""The log's side of witnessing: submit the latest checkpoint to each configured
witness (C2SP tlog-witness ``add-checkpoint``), keep their cosignatures on the stored
checkpoint, and check the log against what each witness last cosigned, so a log rolled
back or forked is caught without anyone keeping a checkpoint by hand."""

from __future__ import annotations

import base64
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

import httpx

from appliance.audit.checkpoint import NoteVerifier, parse_note, verify_checkpoint
from appliance.audit.consistency import consistency_proof_for
from appliance.audit.cosignature import CosignerVerifier, verify_cosignature
from appliance.audit.store import SqlAuditStore
from appliance.audit.witness import SIZE_CONTENT_TYPE
from appliance.errors import ApplianceError, VerificationError

__all__ = [
    "WitnessCheck",
    "WitnessEndpoint",
    "WitnessUnreachable",
    "check_witness",
    "submit_checkpoint",
    "with_cosignature",
]


class WitnessUnreachable(ApplianceError):
    """The witness did not answer (network, TLS, 5xx): no statement either way."""

    status_code = 503
    error_type = "api_error"
    code = "witness_unreachable"


@dataclass(frozen=True)
class WitnessEndpoint:
    verifier: CosignerVerifier
    url: str  # submission and monitoring prefix, e.g. https://witness.example/

    @property
    def name(self) -> str:
        return self.verifier.name


@dataclass(frozen=True)
class WitnessCheck:
    witness: str
    size: int  # the size it last cosigned
    timestamp: int  # when (POSIX seconds)


def with_cosignature(note: str, lines: str, witness: str) -> str:
    """``note`` with ``witness``'s signature lines replaced by ``lines``."""
    text, _, block = note.rpartition("\n\n")
    mine = f"\u2014 {witness} "
    kept = [line for line in block.splitlines() if not line.startswith(mine)]
    return f"{text}\n\n" + "".join(f"{line}\n" for line in kept) + lines


def _post(http: httpx.Client, endpoint: WitnessEndpoint, body: str) -> httpx.Response:
    try:
        response = http.post(
            endpoint.url.rstrip("/") + "/add-checkpoint", content=body.encode("utf-8")
        )
    except httpx.HTTPError as exc:
        raise WitnessUnreachable(f"witness {endpoint.name}: {exc}") from exc
    if response.status_code >= 500:
        raise WitnessUnreachable(f"witness {endpoint.name}: HTTP {response.status_code}")
    return response


def submit_checkpoint(
    store: SqlAuditStore,
    endpoint: WitnessEndpoint,
    *,
    origin: str,
    verifier: NoteVerifier,
    http: httpx.Client,
    known_size: int = 0,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> int:
    """Have ``endpoint`` cosign the latest stored checkpoint; keep its cosignature
    beside the checkpoint (``audit_cosignatures``) and return the size cosigned. A
    witness that has seen more records than the log holds is a rollback:
    VerificationError naming it."""
    latest = store.latest_checkpoint()
    if latest is None:
        raise VerificationError("no checkpoint has been signed yet")
    old = known_size
    for _attempt in range(2):  # the second time with the size the witness told us
        if old > latest.tree_size:
            raise VerificationError(
                f"witness {endpoint.name} has cosigned {old} records, but the log's latest "
                f"checkpoint covers {latest.tree_size}: the log was rolled back"
            )
        proof = consistency_proof_for(
            store, old, latest.tree_size, origin=origin, verifier=verifier
        )["consistency_proof"] if old > 0 else []  # fmt: skip
        body = "".join(f"{line}\n" for line in [f"old {old}", *proof]) + "\n" + latest.note
        response = _post(http, endpoint, body)
        if response.status_code == 409 and response.headers.get("content-type", "").startswith(
            SIZE_CONTENT_TYPE
        ):
            old = int(response.text.strip())
            continue
        if response.status_code != 200:
            raise VerificationError(
                f"witness {endpoint.name} refused the checkpoint at size {latest.tree_size} "
                f"(HTTP {response.status_code}): {response.text.strip()[:300]}"
            )
        mine = [
            line
            for line in response.text.splitlines()
            if line.startswith(f"\u2014 {endpoint.name} ")
        ]
        cosigned = with_cosignature(
            latest.note, "".join(f"{line}\n" for line in mine), endpoint.name
        )
        verify_cosignature(cosigned, endpoint.verifier)  # only valid lines are kept
        for line in mine:
            store.insert_cosignature(latest.tree_size, endpoint.name, line, now())
        return latest.tree_size
    raise VerificationError(f"witness {endpoint.name} keeps answering with another size")


def check_witness(
    store: SqlAuditStore,
    endpoint: WitnessEndpoint,
    *,
    origin: str,
    verifier: NoteVerifier,
    records: int,
    http: httpx.Client,
) -> WitnessCheck | None:
    """Check the log (``records`` long, already verified) against the checkpoint the
    witness last cosigned; None when it has cosigned none. VerificationError naming the
    witness on a rollback (it saw more records) or a fork (another root)."""
    url = endpoint.url.rstrip("/") + "/checkpoints/" + quote(origin, safe="")
    try:
        response = http.get(url)
    except httpx.HTTPError as exc:
        raise WitnessUnreachable(f"witness {endpoint.name}: {exc}") from exc
    if response.status_code == 404:
        return None
    if response.status_code != 200:
        raise WitnessUnreachable(f"witness {endpoint.name}: HTTP {response.status_code}")
    note = response.text
    try:
        seen = verify_checkpoint(note, verifier, origin=origin)
        timestamp = verify_cosignature(parse_note(note), endpoint.verifier)
    except VerificationError as exc:
        raise VerificationError(
            f"witness {endpoint.name} answered a checkpoint that does not verify: {exc.message}"
        ) from exc
    if seen.size > records:
        raise VerificationError(
            f"log rolled back: witness {endpoint.name} cosigned {seen.size} records at "
            f"time {timestamp}, but the log holds only {records}"
        )
    if seen.size > 0:
        ours = consistency_proof_for(store, seen.size, records, origin=origin, verifier=verifier)
        if not hmac.compare_digest(base64.b64decode(ours["old_root_hash"]), seen.root_hash):
            raise VerificationError(
                f"log forked: witness {endpoint.name} cosigned another root for size "
                f"{seen.size} than the log holds now"
            )
    return WitnessCheck(endpoint.name, seen.size, timestamp)
