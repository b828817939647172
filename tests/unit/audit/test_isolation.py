"""Batch isolation: one caller's record never fails the records batched beside it.

Runs on SQLite and PostgreSQL (``migrated_engine`` is parametrized over both)."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.audit.checkpoint import NoteSigner
from appliance.audit.log import Appended, AuditLog, RecordRejected
from appliance.audit.records import AuditRecord, storable, storable_text
from appliance.audit.verify import verify_log
from appliance.audit.writer import GroupCommitWriter
from appliance.errors import InvalidRequest
from appliance.gateway.json_guard import JsonLimits, parse_json
from tests.support.audit import ORIGIN, content_record, make_record

SURROGATE_CONTENT = {"messages": [{"role": "user", "content": "x \ud800 y"}]}


def poisoned(index: int) -> AuditRecord:
    """A record whose content no UTF-8 encoder can write (as the gateway built them
    before the body parser refused lone surrogates)."""
    return content_record(index, content=SURROGATE_CONTENT)


def test_storable_text_replaces_surrogates_drops_nul_and_fits_the_column() -> None:
    assert storable_text("a\ud800b\x00c") == "a\ufffdbc"
    assert storable_text("a\x00b", keep_nul=True) == "a\x00b"
    assert storable_text("é" * 300, 200) == "é" * 200
    plain = "apikey:alice"
    assert storable_text(plain) is plain


def test_storable_keeps_a_clean_record_and_normalises_a_dirty_one() -> None:
    clean = content_record(1)
    assert storable(clean) is clean
    dirty = content_record(
        2,
        username="bo\x00b",
        model="m" * 300,
        params={"presence_penalty": "\x00\udc00"},
        content={"messages": [{"content": "nul \x00 and \ud800"}]},
    )
    fixed = storable(dirty)
    assert fixed.username == "bob"
    assert fixed.model == "m" * 200
    assert fixed.params == {"presence_penalty": "\ufffd"}
    assert fixed.content == {"messages": [{"content": "nul \x00 and \ufffd"}]}


def test_append_each_leaves_out_only_the_record_that_cannot_be_sealed(
    log: AuditLog, signer: NoteSigner
) -> None:
    results = log.append_each([content_record(1), poisoned(2), content_record(3)])
    assert isinstance(results[0], Appended) and isinstance(results[2], Appended)
    assert results[0].index == 0 and results[2].index == 1
    assert results[2].leaf_hash == log.store.leaf_rows_between(1, 2)[0].stored_leaf_hash
    assert isinstance(results[1], RecordRejected)
    assert [r.request_id for r in log.store.latest()] == ["req-3", "req-1"]
    assert verify_log(log.store, signer.verifier(), origin=ORIGIN).records == 2


def test_append_batch_stays_all_or_nothing(log: AuditLog) -> None:
    with pytest.raises(RecordRejected):
        log.append_batch([content_record(1), poisoned(2)])
    assert log.store.latest() == []
    log.append(content_record(3))  # the log goes on
    assert len(log.store.latest()) == 1


def test_a_naive_time_is_refused_alone(log: AuditLog) -> None:
    naive = make_record("naive", at=datetime(2025, 1, 1))
    results = log.append_each([naive, make_record("fine")])
    assert isinstance(results[0], RecordRejected)
    assert isinstance(results[1], Appended) and results[1].index == 0


def test_poisoned_records_beside_40_innocent_ones_fail_alone(
    log: AuditLog, signer: NoteSigner
) -> None:
    async def main() -> list[BaseException | Appended]:
        writer = GroupCommitWriter(log, max_records=64, max_wait_ms=5)
        await writer.start()
        appends = []
        for i in range(40):
            appends.append(writer.append(content_record(i)))
            if i % 4 == 0:
                appends.append(writer.append(poisoned(1000 + i)))
        results = await asyncio.gather(*appends, return_exceptions=True)
        await writer.stop()
        return results

    results = asyncio.run(main())
    rejected = [r for r in results if not isinstance(r, Appended)]
    assert len(rejected) == 10 and all(isinstance(r, RecordRejected) for r in rejected)
    stored = {r.request_id for r in log.store.latest(limit=100)}
    assert stored == {f"req-{i}" for i in range(40)}
    report = verify_log(log.store, signer.verifier(), origin=ORIGIN)
    assert report.records == 40 and report.uncovered == 0


def test_a_record_the_database_refuses_fails_alone(log: AuditLog) -> None:
    # A value only the database refuses (here a repeated record id; on PostgreSQL also
    # a NUL in text): the batch is retried one record at a time.
    first = make_record("first")
    log.append(first)

    async def main() -> list[BaseException | Appended]:
        writer = GroupCommitWriter(log, max_records=64, max_wait_ms=20)
        await writer.start()
        results = await asyncio.gather(
            *(writer.append(make_record(f"ok-{i}")) for i in range(5)),
            writer.append(first),
            return_exceptions=True,
        )
        await writer.stop()
        return results

    results = asyncio.run(main())
    assert all(isinstance(r, Appended) for r in results[:5])
    assert isinstance(results[5], Exception)
    assert len(log.store.latest(limit=100)) == 6


def test_a_nul_in_metadata_never_fails_batch_mates(log: AuditLog) -> None:
    # Bypassing storable(): PostgreSQL refuses the NUL (SQLite stores it); either way
    # the records beside it commit.
    nul = make_record("nul", username="a\x00b")

    async def main() -> list[BaseException | Appended]:
        writer = GroupCommitWriter(log, max_records=64, max_wait_ms=20)
        await writer.start()
        results = await asyncio.gather(
            writer.append(make_record("ok-1")),
            writer.append(nul),
            writer.append(make_record("ok-2")),
            return_exceptions=True,
        )
        await writer.stop()
        return results

    results = asyncio.run(main())
    assert isinstance(results[0], Appended) and isinstance(results[2], Appended)
    stored = {r.request_id for r in log.store.latest(limit=10)}
    assert {"ok-1", "ok-2"} <= stored
    assert ("nul" in stored) == isinstance(results[1], Appended)


_any_text = st.text(
    alphabet=st.one_of(
        st.characters(min_codepoint=0, max_codepoint=0x10FFFF),  # surrogates, NUL, all
        st.sampled_from(["\x00", "\ud800", "\udfff", "\ue000", "\uffff", "\ufdd0", "\U0010fffe"]),
    ),
    max_size=40,
)
_json_shapes = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | _any_text,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(_any_text, children, max_size=4)
    ),
    max_leaves=20,
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(content=_json_shapes, name=_any_text, param=_any_text)
def test_any_input_is_a_committed_record_or_a_4xx_never_a_failed_batch(
    log: AuditLog, content: object, name: str, param: str
) -> None:
    """What a client sends goes through the body parser and the record builder's
    normalisation; whatever passes must commit beside an innocent record."""
    body = json.dumps({"model": "m", "messages": content}, ensure_ascii=True).encode()
    try:
        parsed = parse_json(body, JsonLimits())
    except InvalidRequest as refused:
        assert 400 <= refused.status_code < 500
        return
    record = storable(
        content_record(
            1,
            username=name,
            params={"presence_penalty": param},
            content={"messages": parsed["messages"]},
        )
    )
    innocent = content_record(2)
    results = log.append_each([record, innocent])
    assert all(isinstance(result, Appended) for result in results), results
