"""appliance/audit/store.py and sink.py: append-only audit records in SQL, written
through the sealing log, read back without their content."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import anyio
import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError

from appliance.audit import (
    AuditEvent,
    AuditSink,
    MemoryAuditSink,
    Outcome,
    SearchFilter,
    SqlAuditStore,
)
from appliance.audit.log import AuditLog
from appliance.db import create_db_engine, upgrade_database
from tests.support.audit import T0, build_log, make_record


def full_record(request_id: str, at: datetime):  # type: ignore[no-untyped-def]
    return make_record(
        request_id,
        at=at,
        event=AuditEvent.COMPLETION,
        outcome=Outcome.OK,
        subject="apikey:abc",
        username="alice",
        team="research",
        auth_method="api_key",
        key_id="abc",
        client_addr="10.0.0.7",
        model="smollm2-135m-instruct",
        params={"temperature": 0.2, "max_tokens": 16, "stream": True, "stop": ["\n"]},
        prompt_tokens=12,
        completion_tokens=16,
        latency_ms=345,
        content={"response": ["Paris."]},
    )


@pytest.fixture
def store(log: AuditLog) -> SqlAuditStore:
    return log.store


def test_append_then_by_request_round_trips(log: AuditLog, store: SqlAuditStore) -> None:
    first = make_record("req-1", at=T0)
    other = make_record("req-2", at=T0 + timedelta(seconds=1))
    second = full_record("req-1", T0 + timedelta(seconds=2))
    for item in (first, other, second):
        log.append(item)

    got = store.by_request("req-1")

    assert got == [first, second]  # content is not part of equality, and not read back
    assert all(item.content is None for item in got)
    for item in got:
        assert item.recorded_at.tzinfo is not None
        assert item.recorded_at.utcoffset() == timedelta(0)
        assert isinstance(item.event, AuditEvent)
        assert isinstance(item.outcome, Outcome)
    assert got[1].params == {"temperature": 0.2, "max_tokens": 16, "stream": True, "stop": ["\n"]}
    assert got[1].team == "research"
    assert store.by_request("req-2") == [other]
    assert store.by_request("nope") == []


def test_by_request_orders_by_append_not_by_timestamp(log: AuditLog, store: SqlAuditStore) -> None:
    # Appended order is the log's order, even if clocks disagree.
    late = make_record("r", at=T0 + timedelta(hours=1), event=AuditEvent.REQUEST)
    early = make_record("r", at=T0, event=AuditEvent.COMPLETION, outcome=Outcome.OK)
    log.append(late)
    log.append(early)

    assert store.by_request("r") == [late, early]


def test_latest_is_newest_first_and_limited(log: AuditLog, store: SqlAuditStore) -> None:
    records = [make_record(f"req-{i}", at=T0 + timedelta(seconds=i)) for i in range(5)]
    log.append_batch(records)

    assert store.latest() == list(reversed(records))
    assert store.latest(limit=2) == [records[4], records[3]]
    assert store.latest(limit=0) == []


def test_latest_on_empty_store(store: SqlAuditStore) -> None:
    assert store.latest() == []
    assert store.size() == 0
    assert store.latest_checkpoint() is None


def test_duplicate_record_id_is_refused_and_nothing_of_the_batch_lands(
    log: AuditLog, store: SqlAuditStore
) -> None:
    item = make_record()
    log.append(item)
    with pytest.raises(IntegrityError):
        log.append_batch([make_record("other"), item])
    assert store.by_request(item.request_id) == [item]
    assert store.by_request("other") == []
    assert log.size == 1 == store.size()
    log.append(make_record("after"))  # the log goes on at the next index
    assert [s.entry.index for s in store.iter_entries()] == [0, 1]


def test_store_has_no_update_or_delete_path(store: SqlAuditStore) -> None:
    for name in (
        "update", "delete", "remove", "erase", "purge", "truncate", "clear", "replace",
        "edit", "modify", "update_record", "delete_record", "delete_request", "drop",
    ):  # fmt: skip
        assert not hasattr(store, name), name
    public = {name for name in dir(store) if not name.startswith("_")}
    reads = {
        "by_request", "checkpoints", "engine", "entries_in", "entry", "envelope", "envelopes",
        "index_bounds", "iter_entries", "iter_leaf_hashes", "iter_leaf_rows", "iter_pages",
        "latest", "latest_checkpoint", "latest_checkpoint_in", "leaf_rows_between", "search",
        "size", "size_in", "cosignatures", "iter_search", "recorded_ids_in",
    }  # fmt: skip
    assert public == reads | {"insert", "insert_cosignature", "lock_for_append"}


def test_search_filters(log: AuditLog, store: SqlAuditStore) -> None:
    log.append(make_record("a", at=T0, subject="u1", model="m1", team="t1"))
    log.append(
        make_record(
            "b", at=T0 + timedelta(hours=1), subject="u2", model="m2",
            event=AuditEvent.DENIED, outcome=Outcome.DENIED, status_code=403,
        )
    )  # fmt: skip
    log.append(make_record("c", at=T0 + timedelta(hours=2), subject="u1", model="m2"))

    def ids(**where: object) -> list[str]:
        return [s.entry.record.request_id for s in store.search(SearchFilter(**where))]  # type: ignore[arg-type]

    assert ids(subject="u1") == ["a", "c"]
    assert ids(model="m2") == ["b", "c"]
    assert ids(team="t1") == ["a"]
    assert ids(denials_only=True) == ["b"]
    assert ids(since=T0 + timedelta(minutes=30)) == ["b", "c"]
    assert ids(until=T0 + timedelta(minutes=30)) == ["a"]
    assert ids(limit=1) == ["a"]


def test_iter_search_pages_through_every_match_of_the_events(
    log: AuditLog, store: SqlAuditStore
) -> None:
    events = [AuditEvent.REQUEST, AuditEvent.DENIED, AuditEvent.COMPLETION] * 3
    for number, event in enumerate(events):
        log.append(make_record(f"r{number}", at=T0 + timedelta(minutes=number), event=event))
    wanted = (AuditEvent.REQUEST.value, AuditEvent.COMPLETION.value)
    where = SearchFilter(since=T0 + timedelta(minutes=1), limit=1)  # the limit is ignored
    pages = list(store.iter_search(where, events=wanted, batch=2))
    found = [s.entry.record.request_id for page in pages for s in page]
    expected = [f"r{n}" for n, e in enumerate(events) if n >= 1 and e.value in wanted]
    assert found == expected and len(expected) == 5
    assert [len(page) for page in pages] == [2, 2, 1]


def test_non_utc_input_keeps_its_instant(log: AuditLog, store: SqlAuditStore) -> None:
    at = datetime(2025, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    log.append(make_record("tz", at=at))

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
    log = build_log(kolkata_engine)
    item = make_record("tz", at=T0)
    log.append(item)

    (got,) = log.store.by_request("tz")

    assert got == item  # same instant: this part holds
    assert got.recorded_at.utcoffset() == timedelta(0)
    assert got.recorded_at.isoformat() == item.recorded_at.isoformat()
    assert got.recorded_at.tzinfo == UTC


# -- the in-memory sink -----------------------------------------------------------------


def test_memory_sink_keeps_records_in_order() -> None:
    sink = MemoryAuditSink()
    items = [make_record(f"r{i}") for i in range(3)]
    for item in items:
        anyio.run(sink.append, item)
    assert sink.records == items
    assert isinstance(sink, AuditSink)


def test_memory_sink_fail_flag_raises_and_keeps_nothing() -> None:
    sink = MemoryAuditSink()
    sink.fail = True

    with pytest.raises(OSError, match="unavailable"):
        anyio.run(sink.append, make_record())

    assert sink.records == []
    sink.fail = False
    anyio.run(sink.append, make_record())
    assert len(sink.records) == 1


def test_verifier_fast_path_recomputes_the_same_leaf_bytes(
    log: AuditLog, store: SqlAuditStore
) -> None:
    from appliance.audit.records import leaf_bytes

    log.append_batch(
        [
            full_record("a", T0),
            make_record("b", at=T0, params={"temperature": float("nan"), "stop": ["é", "\n"]}),
            make_record("c", at=datetime(2025, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))),
        ]
    )
    slow = [leaf_bytes(s.entry) for s in store.iter_entries()]
    fast = [row.leaf for page in store.iter_leaf_rows() for row in page]
    assert fast == slow
    assert all(row.known_enums for page in store.iter_leaf_rows() for row in page)
