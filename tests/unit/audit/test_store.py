"""appliance/audit/store.py and sink.py: append-only audit records in SQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import anyio
import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from appliance.audit import (
    AuditEvent,
    AuditRecord,
    AuditSink,
    MemoryAuditSink,
    Outcome,
    SqlAuditStore,
)
from appliance.db import create_db_engine, upgrade_database

T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def record(
    request_id: str = "req-1",
    *,
    at: datetime = T0,
    event: AuditEvent = AuditEvent.REQUEST,
    **fields: object,
) -> AuditRecord:
    values: dict[str, object] = {
        "record_id": str(uuid.uuid4()),
        "recorded_at": at,
        "event": event,
        "request_id": request_id,
        "http_method": "POST",
        "path": "/v1/chat/completions",
        "status_code": 200,
        "outcome": Outcome.ACCEPTED,
    }
    values.update(fields)
    return AuditRecord(**values)  # type: ignore[arg-type]


def full_record(request_id: str, at: datetime) -> AuditRecord:
    return record(
        request_id,
        at=at,
        event=AuditEvent.COMPLETION,
        outcome=Outcome.OK,
        subject="apikey:abc",
        username="alice",
        auth_method="api_key",
        key_id="abc",
        client_addr="10.0.0.7",
        model="smollm2-135m-instruct",
        params={"temperature": 0.2, "max_tokens": 16, "stream": True, "stop": ["\n"]},
        prompt_tokens=12,
        completion_tokens=16,
        latency_ms=345,
    )


@pytest.fixture
def store(migrated_engine: Engine) -> SqlAuditStore:
    return SqlAuditStore(migrated_engine)


def test_store_is_an_audit_sink(store: SqlAuditStore) -> None:
    assert isinstance(store, AuditSink)


def test_append_then_by_request_round_trips(store: SqlAuditStore) -> None:
    first = record("req-1", at=T0)
    other = record("req-2", at=T0 + timedelta(seconds=1))
    second = full_record("req-1", T0 + timedelta(seconds=2))
    for item in (first, other, second):
        anyio.run(store.append, item)

    got = store.by_request("req-1")

    assert got == [first, second]
    for item in got:
        assert item.recorded_at.tzinfo is not None
        assert item.recorded_at.utcoffset() == timedelta(0)
        assert isinstance(item.event, AuditEvent)
        assert isinstance(item.outcome, Outcome)
    assert got[1].params == {"temperature": 0.2, "max_tokens": 16, "stream": True, "stop": ["\n"]}
    assert store.by_request("req-2") == [other]
    assert store.by_request("nope") == []


def test_by_request_orders_by_append_not_by_timestamp(store: SqlAuditStore) -> None:
    # Appended order is the log's order, even if clocks disagree.
    late = record("r", at=T0 + timedelta(hours=1), event=AuditEvent.REQUEST)
    early = record("r", at=T0, event=AuditEvent.COMPLETION, outcome=Outcome.OK)
    anyio.run(store.append, late)
    anyio.run(store.append, early)

    assert store.by_request("r") == [late, early]


def test_latest_is_newest_first_and_limited(store: SqlAuditStore) -> None:
    records = [record(f"req-{i}", at=T0 + timedelta(seconds=i)) for i in range(5)]
    for item in records:
        store.append_sync(item)

    assert store.latest() == list(reversed(records))
    assert store.latest(limit=2) == [records[4], records[3]]
    assert store.latest(limit=0) == []


def test_latest_on_empty_store(store: SqlAuditStore) -> None:
    assert store.latest() == []


def test_duplicate_record_id_is_refused(store: SqlAuditStore) -> None:
    item = record()
    anyio.run(store.append, item)
    with pytest.raises(IntegrityError):
        anyio.run(store.append, item)
    assert store.by_request(item.request_id) == [item]


def test_store_has_no_update_or_delete_path(store: SqlAuditStore) -> None:
    for name in (
        "update",
        "delete",
        "remove",
        "erase",
        "purge",
        "truncate",
        "clear",
        "replace",
        "edit",
        "modify",
        "update_record",
        "delete_record",
        "delete_request",
        "drop",
    ):
        assert not hasattr(store, name), name
    public = {name for name in dir(store) if not name.startswith("_")}
    assert public == {"append", "append_sync", "by_request", "latest"}


def test_non_utc_input_keeps_its_instant(
    store: SqlAuditStore, request: pytest.FixtureRequest
) -> None:
    at = datetime(2025, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    anyio.run(store.append, record("tz", at=at))

    (got,) = store.by_request("tz")

    assert got.recorded_at == at


@pytest.fixture
def kolkata_engine(postgres_url: str) -> Iterator[Engine]:
    """PostgreSQL with a non-UTC session time zone (the server default on many hosts)."""
    url = make_url(postgres_url)
    options = url.query.get("options", "")
    url = url.update_query_dict({"options": f"{options} -ctimezone=Asia/Kolkata".strip()})
    engine = create_db_engine(url.render_as_string(hide_password=False))
    upgrade_database(engine)
    yield engine
    engine.dispose()


@pytest.mark.postgres
def test_postgres_returns_utc_whatever_the_session_time_zone(kolkata_engine: Engine) -> None:
    store = SqlAuditStore(kolkata_engine)
    item = record("tz", at=T0)
    anyio.run(store.append, item)

    (got,) = store.by_request("tz")

    assert got == item  # same instant: this part holds
    assert got.recorded_at.utcoffset() == timedelta(0)
    assert got.recorded_at.isoformat() == item.recorded_at.isoformat()


# -- the in-memory sink -----------------------------------------------------------------


def test_memory_sink_keeps_records_in_order() -> None:
    sink = MemoryAuditSink()
    items = [record(f"r{i}") for i in range(3)]
    for item in items:
        anyio.run(sink.append, item)
    assert sink.records == items
    assert isinstance(sink, AuditSink)


def test_memory_sink_fail_flag_raises_and_keeps_nothing() -> None:
    sink = MemoryAuditSink()
    sink.fail = True

    with pytest.raises(OSError, match="unavailable"):
        anyio.run(sink.append, record())

    assert sink.records == []
    sink.fail = False
    anyio.run(sink.append, record())
    assert len(sink.records) == 1
