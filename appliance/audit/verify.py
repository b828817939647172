"""``audit verify``: recompute the log from its stored rows and check it against every
signed checkpoint (and, optionally, one held outside the appliance); and
``audit prove --consistency``: prove to a monitor that the log only grew.

Reads only. :func:`verify_log` raises :class:`LogVerificationError` naming the first
bad record or checkpoint, and returns a :class:`VerifyReport` when the log is intact.
:func:`consistency_proof_for` returns a checked RFC 6962 consistency proof.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from appliance.audit.checkpoint import Checkpoint, NoteVerifier, verify_checkpoint
from appliance.audit.merkle import CompactRange, MerkleTree, leaf_hash, verify_consistency
from appliance.audit.store import LeafRow, SqlAuditStore, StoredCheckpoint
from appliance.db.tables import audit_checkpoints
from appliance.errors import InvalidRequest, ModelNotFound, VerificationError

__all__ = ["LogVerificationError", "VerifyReport", "consistency_proof_for", "verify_log"]


class LogVerificationError(VerificationError):
    """Tampering found; ``index`` and ``record_id`` name the first bad record, if any."""

    def __init__(
        self, message: str, *, index: int | None = None, record_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.index = index
        self.record_id = record_id


@dataclass(frozen=True)
class VerifyReport:
    records: int
    checkpoints: int
    latest_checkpoint: int  # tree size the newest signed checkpoint covers
    uncovered: int  # records after it (appended since; no signature covers them yet)
    sealed: int  # records with an encrypted content envelope
    contents_dropped: int  # of those, envelopes removed by retention
    external_checkpoint: int | None  # size of the outside checkpoint checked, if any
    root_hash: bytes  # root of the whole log as stored


def _name(row: LeafRow) -> str:
    return f"record {row.index} ({row.record_id})"


def _check_checkpoints(
    stored: list[StoredCheckpoint], verifier: NoteVerifier, origin: str
) -> dict[int, bytes]:
    """Steps 1-2: signatures, and sizes only ever growing in signing order."""
    roots: dict[int, bytes] = {}
    previous: StoredCheckpoint | None = None
    for item in stored:
        # 1. C2SP signed-note: a valid Ed25519 signature by the log's key over a
        #    well-formed checkpoint body with this log's origin line.
        try:
            signed = verify_checkpoint(item.note, verifier, origin=origin)
        except VerificationError as exc:
            raise LogVerificationError(
                f"checkpoint at tree size {item.tree_size} is forged: {exc.message}"
            ) from exc
        if signed.size != item.tree_size or not hmac.compare_digest(
            signed.root_hash, item.root_hash
        ):
            raise LogVerificationError(
                f"checkpoint at tree size {item.tree_size}: stored size or root differ "
                "from the signed note"
            )
        # 2. tlog-checkpoint: a log never signs a smaller tree after a larger one.
        if previous is not None and signed.size <= previous.tree_size:
            raise LogVerificationError(
                f"checkpoint rolled back: size {signed.size} signed after size {previous.tree_size}"
            )
        roots[signed.size] = signed.root_hash
        previous = item
    return roots


def verify_log(
    store: SqlAuditStore,
    verifier: NoteVerifier,
    *,
    origin: str,
    external: str | None = None,
    external_verifier: NoteVerifier | None = None,
    progress: Callable[[int], None] | None = None,
    jobs: int = 1,
) -> VerifyReport:
    """Verify the whole log; raise LogVerificationError at the first problem.

    Steps:
    1-2. every stored checkpoint (see ``_check_checkpoints``);
    3. an outside checkpoint, if given, is signed by the log's key (or the given one);
    4. rows have dense indices 0..n-1 (a gap is a deleted row, a repeat an inserted one);
    5. each row's leaf, recomputed from its fields (RFC 6962 §2.1: SHA-256(0x00 ||
       canonical bytes)), equals the stored leaf hash (a changed or swapped row);
    6. each stored envelope hashes to the content digest in its leaf;
    7. at every checkpoint size, the root of the recomputed prefix equals the signed
       root (RFC 6962 §2.1), which also makes all checkpoints consistent with one
       another (each is a prefix of one sequence, RFC 6962 §2.1.2);
    8. no checkpoint covers more records than exist (a truncated tail), nor does the
       outside one (a log rolled back below what a witness saw).

    ``jobs`` > 1 reads and re-encodes pages in that many worker processes; the tree is
    still built, and every check made, in index order here.
    """
    checkpoints = store.checkpoints()
    roots = _check_checkpoints(checkpoints, verifier, origin)
    outside: Checkpoint | None = None
    if external is not None:
        # 3.
        try:
            outside = verify_checkpoint(external, external_verifier or verifier, origin=origin)
        except VerificationError as exc:
            raise LogVerificationError(f"outside checkpoint: {exc.message}") from exc
        if outside.size in roots and not hmac.compare_digest(
            roots[outside.size], outside.root_hash
        ):
            raise LogVerificationError(
                f"split view: the outside checkpoint and the stored one for size "
                f"{outside.size} have different roots"
            )
    wanted = dict(roots)
    if outside is not None:
        wanted.setdefault(outside.size, outside.root_hash)
    sizes = sorted(wanted)
    next_size = 0
    tree = CompactRange()
    sealed = dropped = 0
    last_good = 0
    last_row: LeafRow | None = None

    def fail(row: LeafRow, message: str) -> LogVerificationError:
        return LogVerificationError(
            f"record {row.index} ({row.record_id}) {message}",
            index=row.index,
            record_id=row.record_id,
        )

    def check_root_at(size: int, first_after_good: LeafRow | None) -> None:
        nonlocal last_good
        if hmac.compare_digest(tree.root(), wanted[size]):
            last_good = size
            return
        where = ""
        if first_after_good is not None:
            where = f" (first record after it: {_name(first_after_good)})"
        raise LogVerificationError(
            f"records {last_good}..{size - 1} do not match the checkpoint signed at size "
            f"{size}: altered, inserted or deleted after signing{where}",
            index=first_after_good.index if first_after_good else None,
            record_id=first_after_good.record_id if first_after_good else None,
        )

    while next_size < len(sizes) and sizes[next_size] == 0:
        check_root_at(0, None)
        next_size += 1

    low, _high, _count = store.index_bounds()
    if low is not None and low < 0:
        raise LogVerificationError(f"a row was inserted at negative index {low}", index=low)
    first_in_range: LeafRow | None = None
    for page, envelopes in _pages(store, jobs):
        for row in page:
            # 4.
            if row.index != tree.size:
                kind = "deleted" if row.index > tree.size else "inserted or repeated"
                raise LogVerificationError(
                    f"record {tree.size} is missing: a row was {kind} "
                    f"(found index {row.index}, {row.record_id})",
                    index=tree.size,
                    record_id=row.record_id,
                )
            if not row.known_enums:
                raise fail(row, "has an unknown event or outcome")
            # 5.
            leaf = leaf_hash(row.leaf)
            if not hmac.compare_digest(leaf, row.stored_leaf_hash):
                raise fail(row, "was changed: its fields no longer hash to its leaf")
            # 6.
            if row.content_sha256 is not None:
                sealed += 1
                digest = envelopes.get(row.index)
                if digest is None:
                    dropped += 1
                elif not hmac.compare_digest(digest, row.content_sha256):
                    raise fail(row, "was changed: its encrypted content was replaced")
            elif row.index in envelopes:
                raise fail(row, "has content attached that its leaf does not name")
            if first_in_range is None:
                first_in_range = row
            tree.append(leaf)
            # 7.
            while next_size < len(sizes) and sizes[next_size] == tree.size:
                check_root_at(tree.size, first_in_range)
                first_in_range = None
                next_size += 1
        if page:
            last_row = page[-1]
        if progress is not None:
            progress(tree.size)
    # 8.
    if next_size < len(sizes):
        size = sizes[next_size]
        what = "the outside checkpoint" if size not in roots else "a stored checkpoint"
        after = f", after {_name(last_row)}" if last_row else ""
        raise LogVerificationError(
            f"log truncated or rolled back: {what} covers {size} records, but only "
            f"{tree.size} exist (first missing: record {tree.size}{after})",
            index=tree.size,
        )
    latest = max(roots) if roots else 0
    return VerifyReport(
        records=tree.size,
        checkpoints=len(checkpoints),
        latest_checkpoint=latest,
        uncovered=tree.size - latest,
        sealed=sealed,
        contents_dropped=dropped,
        external_checkpoint=outside.size if outside is not None else None,
        root_hash=tree.root(),
    )


_PAGE = 5000
Page = tuple[list[LeafRow], dict[int, bytes]]


@functools.lru_cache(maxsize=4)
def _worker_store(url: str) -> SqlAuditStore:
    """One engine per worker process and database (process-local, for the pool)."""
    from appliance.db.engine import create_db_engine

    return SqlAuditStore(create_db_engine(url))


def _read_page(store: SqlAuditStore, start: int) -> Page:
    """Rows with index in [start, start + _PAGE) and the SHA-256 of their envelopes."""
    rows = store.leaf_rows_between(start, start + _PAGE)
    envelopes = store.envelopes(start, start + _PAGE)
    digests = {index: hashlib.sha256(blob).digest() for index, blob in envelopes.items()}
    return rows, digests


def _read_page_in_worker(url: str, start: int) -> Page:
    return _read_page(_worker_store(url), start)


def _pages(store: SqlAuditStore, jobs: int) -> Iterator[Page]:
    """Pages in index order; rows past the highest index do not exist."""
    _low, high, _count = store.index_bounds()
    if high is None:
        return
    starts = range(0, high + 1, _PAGE)
    if jobs <= 1 or len(starts) < 2:
        for start in starts:
            yield _read_page(store, start)
        return
    url = store.engine.url.render_as_string(hide_password=False)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        yield from pool.map(_read_page_in_worker, [url] * len(starts), starts)


# -- consistency proofs for monitors and witnesses -------------------------------------


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def _signed_note_at(store: SqlAuditStore, size: int) -> str | None:
    """The signed checkpoint for exactly ``size`` records, if one was signed."""
    with store.engine.connect() as connection:
        note = connection.execute(
            select(audit_checkpoints.c.note).where(audit_checkpoints.c.tree_size == size)
        ).scalar()
    return str(note) if note is not None else None


def _check_sizes(old_size: int, new_size: int, log_size: int) -> None:
    if old_size < 0:
        raise InvalidRequest(f"from: a tree size cannot be negative ({old_size})", param="from")
    if new_size < 0:
        raise InvalidRequest(f"to: a tree size cannot be negative ({new_size})", param="to")
    if new_size > log_size:
        raise InvalidRequest(
            f"to: the log holds {log_size} records, so there is no tree of size {new_size}",
            param="to",
        )
    if old_size > new_size:
        raise InvalidRequest(
            f"from ({old_size}) is larger than to ({new_size}): a proof runs from the "
            "older, smaller tree to the newer one",
            param="from",
        )


def _tree_of(store: SqlAuditStore, size: int) -> MerkleTree:
    """The tree of the first ``size`` stored leaf hashes (dense indices required)."""
    tree = MerkleTree()
    if size == 0:
        return tree
    for index, leaf in store.iter_leaf_hashes():
        if index != tree.size:
            raise VerificationError(
                f"audit log has a gap at index {tree.size}; run `appliance audit verify`"
            )
        tree.append(leaf)
        if tree.size == size:
            return tree
    raise VerificationError(
        f"audit log ends at {tree.size} records, not {size}; run `appliance audit verify`"
    )


def consistency_proof_for(
    store: SqlAuditStore,
    old_size: int,
    new_size: int | None = None,
    *,
    origin: str,
    verifier: NoteVerifier,
) -> dict[str, Any]:
    """A consistency proof (RFC 6962 §2.1.2) that the tree of ``new_size`` records
    extends the tree of ``old_size``, checked before it is returned, with the signed
    checkpoints at both sizes where they exist (a monitor verifies offline against
    them; a size that no checkpoint covers gets ``null``).

    ``new_size`` defaults to the latest signed checkpoint's size (ModelNotFound
    ``no_checkpoint`` if none is signed yet).

    Steps:
    1. 0 <= old_size <= new_size <= the number of stored records, else InvalidRequest
       naming the parameter (``from`` or ``to``);
    2. the roots at both sizes are recomputed from the stored leaf hashes (RFC 6962
       §2.1), with dense indices;
    3. a signed checkpoint at either size carries the log's signature for this origin
       (C2SP signed-note, tlog-checkpoint) and its root equals the recomputed one
       (else the stored log no longer matches what was signed: VerificationError);
    4. the proof, PROOF(m, D[n]) of RFC 6962 §2.1.2, verifies between the two roots
       (RFC 9162 §2.1.4.2).
    """
    if new_size is None:
        latest = store.latest_checkpoint()
        if latest is None:
            raise ModelNotFound("no checkpoint has been signed yet", code="no_checkpoint")
        new_size = latest.tree_size
    # 1.
    _check_sizes(old_size, new_size, store.size())
    # 2.
    tree = _tree_of(store, new_size)
    roots = {old_size: tree.root(old_size), new_size: tree.root(new_size)}
    # 3.
    notes: dict[int, str | None] = {}
    for size in sorted(roots):
        note = _signed_note_at(store, size) if size > 0 else None
        if note is not None:
            signed = verify_checkpoint(note, verifier, origin=origin)
            if signed.size != size or not hmac.compare_digest(signed.root_hash, roots[size]):
                raise VerificationError(
                    f"the stored records no longer match the checkpoint signed at size "
                    f"{size}; run `appliance audit verify`"
                )
        notes[size] = note
    # 4.
    proof = tree.consistency_proof(old_size, new_size)
    verify_consistency(old_size, new_size, roots[old_size], roots[new_size], proof.hashes)
    return {
        "origin": origin,
        "old_size": old_size,
        "new_size": new_size,
        "old_root_hash": _b64(roots[old_size]),
        "new_root_hash": _b64(roots[new_size]),
        "consistency_proof": [_b64(h) for h in proof.hashes],
        "old_checkpoint": notes[old_size],
        "new_checkpoint": notes[new_size],
    }
