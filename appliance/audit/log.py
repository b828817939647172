"""The sealing writer: encrypt content, place records in the Merkle tree, sign
checkpoints, commit, all in one transaction per batch.

Invariants:
- a batch is durable (committed) before :meth:`AuditLog.append_batch` returns, or it
  raises and nothing of it is visible;
- leaf indices are dense and assigned here. Writers in several processes (gateway
  replicas, a CLI command) take the append lock (:meth:`SqlAuditStore.lock_for_append`)
  and read the rows the others wrote before they pick indices; the ``idx`` primary key
  still makes two writers claiming one index impossible (the loser would catch up and
  retry);
- the log never signs a checkpoint that does not extend its latest signed one: on
  open it checks that the stored frontier reproduces the signed root, and it only
  ever extends that frontier (C2SP tlog-checkpoint: a log MUST NOT sign two
  inconsistent checkpoints).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from appliance.audit.checkpoint import (
    Checkpoint,
    NoteSigner,
    NoteVerifier,
    sign_checkpoint,
    sign_note,
    verify_checkpoint,
)
from appliance.audit.envelope import seal
from appliance.audit.keyring import SubjectKeyRing
from appliance.audit.merkle import CompactRange, leaf_hash
from appliance.audit.records import (
    AuditRecord,
    SealedEntry,
    canonical_json,
    leaf_bytes,
    metadata_bytes,
)
from appliance.audit.store import SqlAuditStore, StoredCheckpoint, entry_row
from appliance.errors import VerificationError

__all__ = ["ANONYMOUS_SUBJECT", "Appended", "AuditLog", "RecordRejected"]

logger = logging.getLogger("appliance.audit.log")

ANONYMOUS_SUBJECT = "-"  # content of a record without a principal is sealed under this
_MAX_ATTEMPTS = 8


@dataclass(frozen=True)
class Appended:
    """A record committed to the log: its leaf index and leaf hash."""

    index: int
    leaf_hash: bytes


class RecordRejected(ValueError):
    """This record cannot be sealed or stored (its own content is at fault); the records
    beside it in the batch are unaffected."""


class AuditLog:
    def __init__(
        self,
        engine: Engine,
        *,
        keyring: SubjectKeyRing,
        signer: NoteSigner,
        origin: str,
        clock: Callable[[], datetime],
        checkpoint_interval_s: float = 10.0,
        record_content: bool = True,
    ) -> None:
        self._store = SqlAuditStore(engine)
        self._keyring = keyring
        self._signer = signer
        self._origin = origin
        self._clock = clock
        self._interval = checkpoint_interval_s
        self._record_content = record_content
        self._tree = CompactRange()
        self._checkpointed = 0
        self._last_checkpoint_at = 0.0
        self._last_signed: StoredCheckpoint | None = None
        self._lock = threading.Lock()  # one batch at a time per process
        self._opened = False

    @property
    def store(self) -> SqlAuditStore:
        return self._store

    @property
    def keyring(self) -> SubjectKeyRing:
        return self._keyring

    @property
    def origin(self) -> str:
        return self._origin

    def sign_note(self, text: str) -> str:
        """A signed note over ``text`` by the log's checkpoint key (receipts)."""
        return sign_note(text, self._signer)

    @property
    def verifier(self) -> NoteVerifier:
        return self._signer.verifier()

    def now(self) -> datetime:
        return self._clock()

    @property
    def size(self) -> int:
        return self._tree.size

    @property
    def uncovered(self) -> int:
        """Records appended since the latest checkpoint this process knows of."""
        return self._tree.size - self._checkpointed

    # -- opening ----------------------------------------------------------------------

    def open(self) -> None:
        """Resume from the latest signed checkpoint (checked), then read the tail."""
        with self._lock, self._store.engine.connect() as connection:
            latest = SqlAuditStore.latest_checkpoint_in(connection)
            tree = CompactRange()
            if latest is not None:
                # 1. the checkpoint is signed by our key for our origin;
                signed = verify_checkpoint(latest.note, self.verifier, origin=self._origin)
                # 2. the stored frontier reproduces the signed root at the signed size.
                try:
                    tree = CompactRange(latest.tree_size, latest.frontier)
                except ValueError as exc:
                    raise VerificationError("stored checkpoint frontier is malformed") from exc
                if (signed.size, signed.root_hash) != (latest.tree_size, tree.root()):
                    raise VerificationError(
                        f"the stored frontier does not match signed checkpoint {signed.size}; "
                        "run `appliance audit verify`"
                    )
                self._checkpointed = latest.tree_size
            self._tree = tree
            self._catch_up(connection)
            self._opened = True
        self._last_checkpoint_at = time.monotonic()

    def _refresh(self) -> bool:
        """Catch up with other writers' rows and checkpoints; say whether any moved."""
        with self._store.engine.connect() as connection:
            before = (self._tree.size, self._checkpointed)
            self._catch_up(connection)
            latest = SqlAuditStore.latest_checkpoint_in(connection)
        if latest is not None and self._checkpointed < latest.tree_size <= self._tree.size:
            self._checkpointed = latest.tree_size
            self._last_signed = latest
        return (self._tree.size, self._checkpointed) != before

    def _catch_up(self, connection: Any) -> None:
        """Add rows other writers committed; their leaves are recomputed, not trusted."""
        for stored in SqlAuditStore.entries_in(connection, self._tree.size):
            if stored.entry.index != self._tree.size:
                raise VerificationError(
                    f"audit log has a gap at index {self._tree.size}; run `appliance audit verify`"
                )
            self._tree.append(leaf_hash(leaf_bytes(stored.entry)))

    # -- appending --------------------------------------------------------------------

    def append(self, record: AuditRecord) -> int:
        return self.append_batch([record])[0]

    def append_batch(self, records: Sequence[AuditRecord]) -> list[int]:
        """Seal and commit ``records`` in one transaction; return their leaf indices.
        Raises :class:`RecordRejected` (nothing committed) if any cannot be sealed."""
        results = self.append_each(records, all_or_nothing=True)
        return [result.index for result in results if isinstance(result, Appended)]

    def append_each(
        self,
        records: Sequence[AuditRecord],
        *,
        all_or_nothing: bool = False,
        skip_recorded: bool = False,
    ) -> list[Appended | RecordRejected | None]:
        """Seal and commit ``records`` in one transaction: for each, where it went in
        (:class:`Appended`: its leaf index and hash, what a receipt names), or the
        :class:`RecordRejected` that kept it out (the others commit without it).
        Failures of the store itself still raise, and then nothing is committed.
        ``skip_recorded``: a record whose id the log already holds is left out (None),
        so replaying a spool twice appends each record once."""
        if not self._opened:
            raise RuntimeError("AuditLog.open() first")
        with self._lock:
            for attempt in range(_MAX_ATTEMPTS):
                try:
                    return self._append_once(
                        records,
                        force_checkpoint=False,
                        all_or_nothing=all_or_nothing,
                        skip_recorded=skip_recorded,
                    )
                except IntegrityError:
                    self._keyring.discard()
                    # Another writer took these indices (or a record id is repeated):
                    # catch up and try again; a repeated id fails every attempt.
                    if attempt == _MAX_ATTEMPTS - 1:
                        raise
                    if not self._refresh():
                        raise
                except BaseException:
                    self._keyring.discard()
                    raise
        raise AssertionError("unreachable")

    def checkpoint(self) -> StoredCheckpoint | None:
        """Sign a checkpoint for the current size now (on demand); None if covered."""
        with self._lock:
            for _attempt in range(_MAX_ATTEMPTS):
                with self._store.engine.connect() as connection:
                    self._catch_up(connection)
                if self._tree.size == self._checkpointed:
                    return None
                try:
                    self._append_once([], force_checkpoint=True)
                    return self._last_signed
                except IntegrityError:
                    self._refresh()
        raise OSError("could not sign a checkpoint: the log kept moving")

    def checkpoint_due(self) -> bool:
        return self.uncovered > 0 and self._interval_elapsed()

    def _interval_elapsed(self) -> bool:
        return time.monotonic() - self._last_checkpoint_at >= self._interval

    def _seal(
        self, record: AuditRecord, index: int, keys: dict[str, tuple[str, bytes]]
    ) -> tuple[SealedEntry, bytes, dict[str, Any], bytes | None]:
        """The record's entry, leaf hash, row and content envelope; raises
        RecordRejected."""
        try:
            envelope: bytes | None = None
            digest: bytes | None = None
            key_id: str | None = None
            if record.content is not None and self._record_content:
                key_id, key = keys[record.subject or ANONYMOUS_SUBJECT]
                envelope = seal(
                    canonical_json(record.content),
                    associated_data=metadata_bytes(record),
                    subject_key=key,
                    key_id=key_id,
                )
                digest = hashlib.sha256(envelope).digest()
            entry = SealedEntry(index, record, digest, key_id)
            leaf = leaf_hash(leaf_bytes(entry))
            return entry, leaf, entry_row(entry, leaf), envelope
        except (ValueError, TypeError, UnicodeError, OverflowError, RecursionError) as exc:
            # Encoding a value of this record failed (canonical JSON, time, sealing):
            # a fault of this record alone, never of its batch.
            raise RecordRejected(
                f"audit record {record.record_id} cannot be sealed: {type(exc).__name__}"
            ) from exc

    def _append_once(
        self,
        records: Sequence[AuditRecord],
        *,
        force_checkpoint: bool,
        all_or_nothing: bool = False,
        skip_recorded: bool = False,
    ) -> list[Appended | RecordRejected | None]:
        now = self._clock()
        with self._store.engine.begin() as connection:
            # Under the append lock, rows other writers added are read before this batch
            # takes its indices, so writers never collide (the retry in append_batch
            # remains for a database that offers no such lock).
            SqlAuditStore.lock_for_append(connection)
            self._catch_up(connection)
            recorded = (
                SqlAuditStore.recorded_ids_in(connection, [r.record_id for r in records])
                if skip_recorded
                else set()
            )
            tree = self._tree.copy()
            sealed_subjects = {
                record.subject or ANONYMOUS_SUBJECT
                for record in records
                if record.content is not None and self._record_content
            }
            keys = self._keyring.keys_for(connection, sealed_subjects, now)
            rows: list[dict[str, Any]] = []
            contents: list[dict[str, Any]] = []
            results: list[Appended | RecordRejected | None] = []
            for record in records:
                if record.record_id in recorded:
                    results.append(None)
                    continue
                try:
                    entry, leaf, row, envelope = self._seal(record, tree.size, keys)
                except RecordRejected as rejected:
                    if all_or_nothing:
                        raise
                    results.append(rejected)
                    continue
                tree.append(leaf)
                rows.append(row)
                if envelope is not None:
                    contents.append({"idx": entry.index, "envelope": envelope})
                results.append(Appended(entry.index, leaf))
            checkpoint = None
            if tree.size > self._checkpointed and (force_checkpoint or self._interval_elapsed()):
                # Checkpoint times never go backwards (verify checks signing order by
                # them), even if the wall clock is stepped back.
                previous = SqlAuditStore.latest_checkpoint_in(connection)
                at = max(now, previous.created_at) if previous is not None else now
                checkpoint = self._sign(tree, at)
            SqlAuditStore.insert(connection, rows, contents, checkpoint)
        # Committed: only now does this process's view move on.
        self._keyring.commit()
        self._tree = tree
        if checkpoint is not None:
            self._checkpointed = checkpoint.tree_size
            self._last_checkpoint_at = time.monotonic()
            self._last_signed = checkpoint
        return results

    def _sign(self, tree: CompactRange, now: datetime) -> StoredCheckpoint:
        body = Checkpoint(origin=self._origin, size=tree.size, root_hash=tree.root())
        return StoredCheckpoint(
            tree_size=body.size,
            root_hash=body.root_hash,
            note=sign_checkpoint(body, self._signer),
            frontier=tree.hashes,
            created_at=now,
        )
