"""The audit log in SQL (SQLite or PostgreSQL): append and read; no update, no delete.

Appending is the sealing writer's job (appliance.audit.log): it computes leaves and
signs checkpoints, then hands rows to :meth:`SqlAuditStore.insert` inside its own
transaction. Everything else here reads.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Select, func, insert, select, text

from appliance.audit.records import (
    AuditEvent,
    AuditRecord,
    Outcome,
    SealedEntry,
    format_time,
    json_safe,
    leaf_bytes_of,
)
from appliance.db.tables import (
    audit_checkpoints,
    audit_contents,
    audit_cosignatures,
    audit_log,
)

__all__ = [
    "LeafRow",
    "SearchFilter",
    "SqlAuditStore",
    "StoredCheckpoint",
    "StoredEntry",
    "entry_row",
]

_META_COLUMNS = (
    "record_id", "recorded_at", "event", "request_id", "subject", "username", "team",
    "auth_method", "key_id", "client_addr", "http_method", "path", "model", "params",
    "status_code", "outcome", "denial_reason", "prompt_tokens", "completion_tokens",
    "latency_ms",
)  # fmt: skip


@dataclass(frozen=True)
class StoredEntry:
    """A row as stored: the sealed entry and the leaf hash stored beside it."""

    entry: SealedEntry
    stored_leaf_hash: bytes


@dataclass(frozen=True)
class LeafRow:
    """What verification needs of a row, without building an AuditRecord."""

    index: int
    record_id: str
    leaf: bytes  # the leaf input recomputed from the row's fields
    stored_leaf_hash: bytes
    content_sha256: bytes | None
    known_enums: bool  # event and outcome are values this code knows


@dataclass(frozen=True)
class StoredCheckpoint:
    tree_size: int
    root_hash: bytes
    note: str
    frontier: tuple[bytes, ...]
    created_at: datetime


@dataclass(frozen=True)
class SearchFilter:
    subject: str | None = None
    username: str | None = None
    team: str | None = None
    model: str | None = None
    event: str | None = None
    outcome: str | None = None
    request_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    denials_only: bool = False
    limit: int = 100


# The append lock's pg_advisory_xact_lock key: one fixed int64 for every process.
_APPEND_LOCK = int.from_bytes(b"apl-audt", "big") & 0x7FFF_FFFF_FFFF_FFFF
_INSERT_ENTRIES = insert(audit_log)  # built once: appends run on every request's path
_INSERT_CONTENTS = insert(audit_contents)


def _utc(value: datetime) -> datetime:
    # SQLite drops the zone (we only store UTC); PostgreSQL answers in the session's.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def entry_row(entry: SealedEntry, leaf: bytes) -> dict[str, Any]:
    record = entry.record
    if record.recorded_at.tzinfo is None:
        raise ValueError("audit record time must be timezone-aware")
    return {
        "idx": entry.index,
        "record_id": record.record_id,
        "recorded_at": record.recorded_at.astimezone(UTC),
        "event": record.event.value,
        "request_id": record.request_id,
        "subject": record.subject,
        "username": record.username,
        "team": record.team,
        "auth_method": record.auth_method,
        "key_id": record.key_id,
        "client_addr": record.client_addr,
        "http_method": record.http_method,
        "path": record.path,
        "model": record.model,
        # As JSON can hold it (PostgreSQL refuses NaN); the leaf encodes it the same way.
        "params": json_safe(record.params) if record.params is not None else None,
        "status_code": record.status_code,
        "outcome": record.outcome.value,
        "denial_reason": record.denial_reason,
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "latency_ms": record.latency_ms,
        "content_sha256": entry.content_sha256,
        "content_key_id": entry.content_key_id,
        "leaf_hash": leaf,
    }


def _stored(mapping: Any) -> StoredEntry:
    values = {name: mapping[name] for name in _META_COLUMNS}
    values["recorded_at"] = _utc(values["recorded_at"])
    # Unknown enum values (a tampered row) must reach verification, not crash a read.
    event, outcome = values.pop("event"), values.pop("outcome")
    record = AuditRecord(
        event=AuditEvent(event) if event in AuditEvent._value2member_map_ else event,
        outcome=Outcome(outcome) if outcome in Outcome._value2member_map_ else outcome,
        **values,
    )
    sha = mapping["content_sha256"]
    entry = SealedEntry(
        index=mapping["idx"],
        record=record,
        content_sha256=bytes(sha) if sha is not None else None,
        content_key_id=mapping["content_key_id"],
    )
    return StoredEntry(entry=entry, stored_leaf_hash=bytes(mapping["leaf_hash"]))


_EVENTS = frozenset(AuditEvent._value2member_map_)
_OUTCOMES = frozenset(Outcome._value2member_map_)


def _leaf_row(mapping: Any) -> LeafRow:
    """Same bytes as ``leaf_bytes(_stored(mapping).entry)`` (tested), faster."""
    meta = {name: mapping[name] for name in _META_COLUMNS}
    meta["recorded_at"] = format_time(_utc(meta["recorded_at"]))
    if meta["params"] is not None:
        meta["params"] = json_safe(meta["params"])
    sha = mapping["content_sha256"]
    sha = bytes(sha) if sha is not None else None
    return LeafRow(
        index=mapping["idx"],
        record_id=meta["record_id"],
        leaf=leaf_bytes_of(mapping["idx"], meta, sha, mapping["content_key_id"]),
        stored_leaf_hash=bytes(mapping["leaf_hash"]),
        content_sha256=sha,
        known_enums=meta["event"] in _EVENTS and meta["outcome"] in _OUTCOMES,
    )


def _checkpoint(mapping: Any) -> StoredCheckpoint:
    frontier = bytes(mapping["frontier"])
    return StoredCheckpoint(
        tree_size=mapping["tree_size"],
        root_hash=bytes(mapping["root_hash"]),
        note=mapping["note"],
        frontier=tuple(frontier[i : i + 32] for i in range(0, len(frontier), 32)),
        created_at=_utc(mapping["created_at"]),
    )


def _filtered(where: SearchFilter) -> Select[Any]:
    """``SELECT`` of the rows matching ``where``'s fields (not its limit)."""
    columns = audit_log.c
    query = select(audit_log)
    for name in ("subject", "username", "team", "model", "event", "outcome", "request_id"):
        value = getattr(where, name)
        if value is not None:
            query = query.where(columns[name] == value)
    if where.since is not None:
        query = query.where(columns.recorded_at >= where.since.astimezone(UTC))
    if where.until is not None:
        query = query.where(columns.recorded_at < where.until.astimezone(UTC))
    if where.denials_only:
        query = query.where(columns.outcome == Outcome.DENIED.value)
    return query


class SqlAuditStore:
    def __init__(self, engine: Engine):
        self._engine = engine

    @property
    def engine(self) -> Engine:
        return self._engine

    # -- append (inside the sealing writer's transaction) ---------------------------

    @staticmethod
    def lock_for_append(connection: Connection) -> None:
        """Take the log's append lock for the rest of this transaction, before reading
        where the log ends: writers in other processes (gateway replicas, the CLI)
        then append one after another instead of colliding on the next index.
        PostgreSQL: a transaction-scoped advisory lock. SQLite: BEGIN IMMEDIATE (the
        database's one write lock, taken now rather than at the first INSERT)."""
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _APPEND_LOCK})
        elif connection.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    @staticmethod
    def recorded_ids_in(connection: Connection, record_ids: Sequence[str]) -> set[str]:
        """Which of ``record_ids`` the log already holds (a spool replayed twice)."""
        found: set[str] = set()
        for start in range(0, len(record_ids), 500):  # bounded IN lists
            chunk = list(record_ids[start : start + 500])
            query = select(audit_log.c.record_id).where(audit_log.c.record_id.in_(chunk))
            found.update(connection.execute(query).scalars())
        return found

    @staticmethod
    def insert(
        connection: Connection,
        rows: Sequence[dict[str, Any]],
        contents: Sequence[dict[str, Any]],
        checkpoint: StoredCheckpoint | None = None,
    ) -> None:
        if rows:
            connection.execute(_INSERT_ENTRIES, list(rows))
        if contents:
            connection.execute(_INSERT_CONTENTS, list(contents))
        if checkpoint is not None:
            connection.execute(
                insert(audit_checkpoints).values(
                    tree_size=checkpoint.tree_size,
                    root_hash=checkpoint.root_hash,
                    note=checkpoint.note,
                    frontier=b"".join(checkpoint.frontier),
                    created_at=checkpoint.created_at,
                )
            )

    # -- reads -----------------------------------------------------------------------

    @staticmethod
    def size_in(connection: Connection) -> int:
        """Number of leaves: the highest index plus one (gaps are verify's business)."""
        top = connection.execute(select(func.max(audit_log.c.idx))).scalar()
        return 0 if top is None else int(top) + 1

    def size(self) -> int:
        with self._engine.connect() as connection:
            return self.size_in(connection)

    @staticmethod
    def entries_in(connection: Connection, start: int, end: int | None = None) -> list[StoredEntry]:
        query = select(audit_log).where(audit_log.c.idx >= start).order_by(audit_log.c.idx)
        if end is not None:
            query = query.where(audit_log.c.idx < end)
        return [_stored(row._mapping) for row in connection.execute(query)]

    def iter_pages(self, start: int = 0, *, batch: int = 5000) -> Iterator[list[StoredEntry]]:
        """Every row in index order, a page (one short query) at a time."""
        position = start
        while True:
            with self._engine.connect() as connection:
                rows = connection.execute(
                    select(audit_log)
                    .where(audit_log.c.idx >= position)
                    .order_by(audit_log.c.idx)
                    .limit(batch)
                ).all()
            if rows:
                yield [_stored(row._mapping) for row in rows]
            if len(rows) < batch:
                return
            position = int(rows[-1]._mapping["idx"]) + 1

    def leaf_rows_between(self, start: int, end: int) -> list[LeafRow]:
        """Rows with ``start <= idx < end`` as :class:`LeafRow`, in index order."""
        with self._engine.connect() as connection:
            rows = connection.execute(
                select(audit_log)
                .where(audit_log.c.idx >= start, audit_log.c.idx < end)
                .order_by(audit_log.c.idx)
            ).all()
        return [_leaf_row(row._mapping) for row in rows]

    def index_bounds(self) -> tuple[int | None, int | None, int]:
        """(lowest index, highest index, number of rows)."""
        with self._engine.connect() as connection:
            low, high, count = connection.execute(
                select(func.min(audit_log.c.idx), func.max(audit_log.c.idx), func.count())
            ).one()
        return low, high, int(count)

    def iter_leaf_rows(self, *, batch: int = 5000) -> Iterator[list[LeafRow]]:
        """Every row as a :class:`LeafRow`, in index order, a page at a time."""
        position = 0
        while True:
            with self._engine.connect() as connection:
                rows = connection.execute(
                    select(audit_log)
                    .where(audit_log.c.idx >= position)
                    .order_by(audit_log.c.idx)
                    .limit(batch)
                ).all()
            if rows:
                yield [_leaf_row(row._mapping) for row in rows]
            if len(rows) < batch:
                return
            position = int(rows[-1]._mapping["idx"]) + 1

    def iter_entries(self, start: int = 0, *, batch: int = 5000) -> Iterator[StoredEntry]:
        for page in self.iter_pages(start, batch=batch):
            yield from page

    def iter_leaf_hashes(self, *, batch: int = 50000) -> Iterator[tuple[int, bytes]]:
        position = 0
        while True:
            with self._engine.connect() as connection:
                rows = connection.execute(
                    select(audit_log.c.idx, audit_log.c.leaf_hash)
                    .where(audit_log.c.idx >= position)
                    .order_by(audit_log.c.idx)
                    .limit(batch)
                ).all()
            for index, leaf in rows:
                yield int(index), bytes(leaf)
            if len(rows) < batch:
                return
            position = int(rows[-1][0]) + 1

    def _records(self, query: Select[Any]) -> list[AuditRecord]:
        with self._engine.connect() as connection:
            return [_stored(row._mapping).entry.record for row in connection.execute(query)]

    def by_request(self, request_id: str) -> list[AuditRecord]:
        return self._records(
            select(audit_log).where(audit_log.c.request_id == request_id).order_by(audit_log.c.idx)
        )

    def latest(self, limit: int = 100) -> list[AuditRecord]:
        return self._records(select(audit_log).order_by(audit_log.c.idx.desc()).limit(limit))

    def entry(self, record_id: str) -> StoredEntry | None:
        with self._engine.connect() as connection:
            row = connection.execute(
                select(audit_log).where(audit_log.c.record_id == record_id)
            ).first()
        return _stored(row._mapping) if row is not None else None

    def search(self, where: SearchFilter) -> list[StoredEntry]:
        query = _filtered(where).order_by(audit_log.c.idx).limit(where.limit)
        with self._engine.connect() as connection:
            return [_stored(row._mapping) for row in connection.execute(query)]

    def iter_search(
        self, where: SearchFilter, *, events: Sequence[str] = (), batch: int = 5000
    ) -> Iterator[list[StoredEntry]]:
        """Every row :meth:`search` would find were there no limit, and whose event is
        one of ``events`` (any if empty), in index order, a page at a time."""
        base = _filtered(where)
        if events:
            base = base.where(audit_log.c.event.in_(list(events)))
        position = 0
        while True:
            query = base.where(audit_log.c.idx >= position).order_by(audit_log.c.idx)
            with self._engine.connect() as connection:
                rows = connection.execute(query.limit(batch)).all()
            if rows:
                yield [_stored(row._mapping) for row in rows]
            if len(rows) < batch:
                return
            position = int(rows[-1]._mapping["idx"]) + 1

    def envelope(self, index: int) -> bytes | None:
        with self._engine.connect() as connection:
            value = connection.execute(
                select(audit_contents.c.envelope).where(audit_contents.c.idx == index)
            ).scalar()
        return bytes(value) if value is not None else None

    def envelopes(self, start: int, end: int) -> dict[int, bytes]:
        with self._engine.connect() as connection:
            rows = connection.execute(
                select(audit_contents.c.idx, audit_contents.c.envelope).where(
                    audit_contents.c.idx >= start, audit_contents.c.idx < end
                )
            ).all()
        return {int(index): bytes(blob) for index, blob in rows}

    def checkpoints(self) -> list[StoredCheckpoint]:
        with self._engine.connect() as connection:
            rows = connection.execute(
                select(audit_checkpoints).order_by(
                    audit_checkpoints.c.created_at, audit_checkpoints.c.tree_size
                )
            )
            return [_checkpoint(row._mapping) for row in rows]

    @staticmethod
    def latest_checkpoint_in(connection: Connection) -> StoredCheckpoint | None:
        row = connection.execute(
            select(audit_checkpoints).order_by(audit_checkpoints.c.tree_size.desc()).limit(1)
        ).first()
        return _checkpoint(row._mapping) if row is not None else None

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        with self._engine.connect() as connection:
            return self.latest_checkpoint_in(connection)

    def insert_cosignature(self, tree_size: int, witness: str, line: str, at: datetime) -> None:
        """Keep a witness's cosignature line of the checkpoint at ``tree_size`` (its
        first one for that size; a repeat is ignored)."""
        with self._engine.begin() as connection:
            exists = connection.execute(
                select(audit_cosignatures.c.tree_size).where(
                    audit_cosignatures.c.tree_size == tree_size,
                    audit_cosignatures.c.witness == witness,
                )
            ).first()
            if exists is None:
                connection.execute(
                    insert(audit_cosignatures).values(
                        tree_size=tree_size, witness=witness, line=line, created_at=at
                    )
                )

    def cosignatures(self, tree_size: int) -> list[str]:
        """The witnesses' signature lines for the checkpoint at ``tree_size``."""
        with self._engine.connect() as connection:
            rows = connection.execute(
                select(audit_cosignatures.c.line)
                .where(audit_cosignatures.c.tree_size == tree_size)
                .order_by(audit_cosignatures.c.witness)
            )
            return [str(line) for (line,) in rows]
