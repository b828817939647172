"""``audit verify``: recompute the log from its stored rows and check it against every
signed checkpoint (and, optionally, one held outside the appliance).

Reads only. :func:`verify_log` raises :class:`LogVerificationError` naming the first
bad record or checkpoint, and returns a :class:`VerifyReport` when the log is intact.
Consistency proofs for monitors live in :mod:`appliance.audit.consistency`.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from appliance.audit.checkpoint import Checkpoint, NoteVerifier, verify_checkpoint
from appliance.audit.key_history import KeyHistory, read_key_history
from appliance.audit.merkle import CompactRange, leaf_hash
from appliance.audit.records import leaf_bytes_of
from appliance.audit.store import LeafRow, SqlAuditStore, StoredCheckpoint
from appliance.errors import VerificationError

__all__ = ["LogVerificationError", "VerifyReport", "verify_log"]


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


def _fail(row: LeafRow, message: str) -> LogVerificationError:
    return LogVerificationError(f"{_name(row)} {message}", index=row.index, record_id=row.record_id)


# -- a moved record or a changed one ---------------------------------------------------

# How far from where a row stands the index it was signed at is looked for: a run of up
# to this many rows inserted or deleted mid-log is named as such (else: "changed").
_MOVE_WINDOW = 1000


def _signed_index(row: LeafRow, candidates: Iterable[int]) -> int | None:
    """The first of ``candidates`` at which this row's fields hash to its stored leaf
    hash: the index its record was signed at. The leaf encodes its own index
    (``records.leaf_bytes_of``), so a record moved intact hashes only where it was."""
    document = json.loads(row.leaf)
    content = document["content"]
    sha = bytes.fromhex(content["sha256"]) if content is not None else None
    key = content["key"] if content is not None else None
    for index in candidates:
        leaf = leaf_bytes_of(index, document["meta"], sha, key)
        if hmac.compare_digest(leaf_hash(leaf), row.stored_leaf_hash):
            return index
    return None


def _around(index: int, floor: int) -> Iterator[int]:
    """Indices near ``index`` (not itself), nearest first, none below ``floor``."""
    for distance in range(1, _MOVE_WINDOW + 1):
        if index - distance >= floor:
            yield index - distance
        yield index + distance


def _down_from(index: int, floor: int) -> range:
    """``index`` and the indices below it, nearest first, none below ``floor``."""
    return range(index, max(floor, index - _MOVE_WINDOW) - 1, -1)


def _inserted(store: SqlAuditStore, first: int, moved: LeafRow) -> LogVerificationError:
    """Rows ``first``..``moved.index - 1`` were inserted: ``moved`` was signed at ``first``."""
    count = moved.index - first
    head = store.leaf_rows_between(first, first + 1)
    record_id = head[0].record_id if head else None
    note = f"the row now at {moved.index}, {moved.record_id}, was signed at index {first}"
    if count == 1:
        message = (
            f"record {first} ({record_id}) was inserted: the records after it moved up by "
            f"one ({note})"
        )
    else:
        message = (
            f"records {first}..{moved.index - 1} were inserted (first: {record_id}): the "
            f"records after them moved up by {count} ({note})"
        )
    return LogVerificationError(message, index=first, record_id=record_id)


def _deleted(row: LeafRow, signed: int) -> LogVerificationError:
    """Rows ``row.index``..``signed - 1`` were deleted: ``row`` was signed at ``signed``.
    The deleted records' ids went with their rows (``record_id`` is None)."""
    count = signed - row.index
    note = f"the row now at {row.index}, {row.record_id}, was signed at index {signed}"
    if count == 1:
        message = f"record {row.index} was deleted: the records after it moved down by one ({note})"
    else:
        message = (
            f"records {row.index}..{signed - 1} were deleted: the records after them moved "
            f"down by {count} ({note})"
        )
    return LogVerificationError(message, index=row.index)


def _moved_or_changed(store: SqlAuditStore, row: LeafRow, floor: int) -> LogVerificationError:
    """Step 5 failed at ``row``: every row before it hashed to its own leaf, and those
    below ``floor`` are covered by a verified checkpoint. A record moved intact keeps
    its stored leaf hash, which matches only the index it was signed at; so:

    a. ``row`` was signed at a lower index j: rows j..i-1 were inserted before it;
    b. ``row`` was signed at a higher index j and the next row at j+1 (or none follows):
       rows i..j-1 were deleted and the later ones moved down;
    c. ``row`` was signed at a higher index otherwise: rows were reordered (changed);
    d. ``row`` matches no index, but the next row was signed at j <= i: rows j..i
       were inserted (``row`` among them, with a leaf hash not its own);
    e. otherwise ``row`` was changed in place.

    Reads at most two more rows; the hashing stays within ``_MOVE_WINDOW`` rows.
    """
    signed = _signed_index(row, _around(row.index, floor))
    if signed is not None and signed < row.index:
        return _inserted(store, signed, row)  # a
    following = store.leaf_rows_between(row.index + 1, row.index + 2)
    after = following[0] if following else None
    if signed is not None:
        if after is None or _signed_index(after, [signed + 1]) is not None:
            return _deleted(row, signed)  # b
        return _fail(  # c
            row, f"was changed: it holds the record signed at index {signed} (rows reordered)"
        )
    if after is not None:
        moved_from = _signed_index(after, _down_from(row.index, floor))
        if moved_from is not None:
            return _inserted(store, moved_from, after)  # d
    return _fail(row, "was changed: its fields no longer hash to its leaf")  # e


def _check_checkpoints(
    stored: list[StoredCheckpoint], history: KeyHistory, origin: str
) -> dict[int, bytes]:
    """Steps 1-2: signatures, and sizes only ever growing in signing order."""
    roots: dict[int, bytes] = {}
    previous: StoredCheckpoint | None = None
    try:
        # 1a. each key change's handover checkpoint is signed by both keys
        #     (appliance.audit.key_history).
        history.check_handovers([(c.tree_size, c.note) for c in stored], origin=origin)
    except VerificationError as exc:
        raise LogVerificationError(exc.message) from exc
    for item in stored:
        # 1. C2SP signed-note: a valid signature by the log's key for that tree size
        #    (its key history) over a well-formed checkpoint body with this log's origin.
        try:
            signed = history.verify(item.note, origin=origin)
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
       canonical bytes)), equals the stored leaf hash; where not, the leaf's own index
       tells a record moved by rows inserted or deleted before it from a changed or
       swapped row (see ``_moved_or_changed``);
    6. each stored envelope hashes to the content digest in its leaf;
    7. at every checkpoint size, the root of the recomputed prefix equals the signed
       root (RFC 6962 §2.1), which also makes all checkpoints consistent with one
       another (each is a prefix of one sequence, RFC 6962 §2.1.2); where not, and the
       next row was signed at an index in the range, the rows from there were inserted;
    8. no checkpoint covers more records than exist (a truncated tail), nor does the
       outside one (a log rolled back below what a witness saw).

    ``jobs`` > 1 reads and re-encodes pages in that many worker processes; the tree is
    still built, and every check made, in index order here.
    """
    checkpoints = store.checkpoints()
    try:
        # The keys that signed which sizes, from the log's audit.keys records; they are
        # checked below like every other record.
        history = read_key_history(store.engine, verifier)
    except VerificationError as exc:
        raise LogVerificationError(f"key history: {exc.message}") from exc
    roots = _check_checkpoints(checkpoints, history, origin)
    outside: Checkpoint | None = None
    if external is not None:
        # 3.
        try:
            if external_verifier is not None:
                outside = verify_checkpoint(external, external_verifier, origin=origin)
            else:
                outside = history.verify(external, origin=origin)
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

    def check_root_at(size: int, first_after_good: LeafRow | None) -> None:
        nonlocal last_good
        if hmac.compare_digest(tree.root(), wanted[size]):
            last_good = size
            return
        where = ""
        if first_after_good is not None:
            following = store.leaf_rows_between(size, size + 1)
            if following:
                moved_from = _signed_index(following[0], _down_from(size - 1, last_good))
                if moved_from is not None:
                    raise _inserted(store, moved_from, following[0])
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
                raise _fail(row, "has an unknown event or outcome")
            # 5.
            leaf = leaf_hash(row.leaf)
            if not hmac.compare_digest(leaf, row.stored_leaf_hash):
                raise _moved_or_changed(store, row, last_good)
            # 6.
            if row.content_sha256 is not None:
                sealed += 1
                digest = envelopes.get(row.index)
                if digest is None:
                    dropped += 1
                elif not hmac.compare_digest(digest, row.content_sha256):
                    raise _fail(row, "was changed: its encrypted content was replaced")
            elif row.index in envelopes:
                raise _fail(row, "has content attached that its leaf does not name")
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
