"""The tampering matrix, on SQLite and PostgreSQL: someone with write access to the
database changes, deletes, swaps, truncates or inserts records (moving the later rows
to close or open the gap), or forges or rolls back checkpoints; `audit verify` notices
and names the first bad record, and says whether it was changed, inserted or deleted."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, delete, func, insert, select, update

from appliance.audit import verify as verify_module
from appliance.audit.checkpoint import Checkpoint, NoteSigner, sign_checkpoint
from appliance.audit.log import AuditLog
from appliance.audit.merkle import leaf_hash
from appliance.audit.records import SealedEntry, leaf_bytes
from appliance.audit.store import SqlAuditStore, entry_row
from appliance.audit.verify import LogVerificationError, verify_log
from appliance.db.tables import audit_checkpoints, audit_contents, audit_log
from appliance.errors import VerificationError
from tests.support.audit import ORIGIN, build_log, content_record

RECORDS = 12


@pytest.fixture
def signer() -> NoteSigner:
    return NoteSigner.generate(ORIGIN)


@pytest.fixture
def log(migrated_engine: Engine, signer: NoteSigner) -> AuditLog:
    log = build_log(migrated_engine, signer=signer)
    # Checkpoints at 4, 8 and 12 records.
    for start in range(0, RECORDS, 4):
        log.append_batch([content_record(i) for i in range(start, start + 4)])
        log.checkpoint()
    return log


def verify(log: AuditLog, signer: NoteSigner, **kwargs: Any):  # type: ignore[no-untyped-def]
    return verify_log(SqlAuditStore(log.store.engine), signer.verifier(), origin=ORIGIN, **kwargs)


def rows(engine: Engine) -> dict[int, dict[str, Any]]:
    with engine.connect() as connection:
        return {r.idx: dict(r._mapping) for r in connection.execute(select(audit_log))}


def fails_at(
    log: AuditLog, signer: NoteSigner, index: int | None, match: str, **kw: Any
) -> LogVerificationError:
    with pytest.raises(LogVerificationError, match=match) as caught:
        verify(log, signer, **kw)
    assert caught.value.index == index
    return caught.value


@pytest.fixture(params=[None, 5], ids=["one-page", "pages-of-5"])
def paged(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Verify reads the rows in one page, or in pages of 5 (so that a moved row and the
    rows it is told apart by sit on different pages)."""
    if request.param is not None:
        monkeypatch.setattr(verify_module, "_PAGE", request.param)


def move(engine: Engine, start: int, by: int) -> None:
    """Move every row (and its envelope) at index >= ``start`` by ``by`` places, as a
    forger closing a gap (``by`` < 0) or opening one (``by`` > 0) would."""
    for table in (audit_log, audit_contents):
        with engine.begin() as connection:
            indices = connection.execute(select(table.c.idx).where(table.c.idx >= start))
            for (index,) in sorted(indices, reverse=by > 0):
                connection.execute(update(table).where(table.c.idx == index).values(idx=index + by))


def forge(engine: Engine, index: int, seed: int) -> str:
    """Insert a forged record at ``index`` with the leaf hash the writer would have
    stored for it there (a careful forger); returns its record id."""
    entry = SealedEntry(
        index=index, record=content_record(seed), content_sha256=None, content_key_id=None
    )
    with engine.begin() as connection:
        connection.execute(insert(audit_log), [entry_row(entry, leaf_hash(leaf_bytes(entry)))])
    return entry.record.record_id


def test_intact_log_verifies(log: AuditLog, signer: NoteSigner) -> None:
    report = verify(log, signer)
    assert (report.records, report.checkpoints, report.latest_checkpoint) == (RECORDS, 3, RECORDS)
    assert report.uncovered == 0
    assert report.sealed == RECORDS


@pytest.mark.parametrize("index", [4, 5, RECORDS - 1])  # first of a page, middle, last
def test_changed_field_names_the_record(
    log: AuditLog, signer: NoteSigner, paged: None, index: int
) -> None:
    record_id = rows(log.store.engine)[index]["record_id"]
    with log.store.engine.begin() as connection:
        connection.execute(update(audit_log).where(audit_log.c.idx == index).values(model="gpt-9"))
    error = fails_at(
        log,
        signer,
        index,
        rf"^record {index} \({record_id}\) was changed: its fields no longer hash to its leaf$",
    )
    assert error.record_id == record_id


def test_changed_field_with_recomputed_leaf_hash_is_caught_by_the_checkpoint(
    log: AuditLog, signer: NoteSigner
) -> None:
    engine = log.store.engine
    with engine.begin() as connection:
        connection.execute(update(audit_log).where(audit_log.c.idx == 5).values(prompt_tokens=1))
    # A careful forger recomputes the stored leaf hash as well.
    with engine.connect() as connection:
        (stored,) = SqlAuditStore.entries_in(connection, 5, 6)
    with engine.begin() as connection:
        connection.execute(
            update(audit_log)
            .where(audit_log.c.idx == 5)
            .values(leaf_hash=leaf_hash(leaf_bytes(stored.entry)))
        )
    fails_at(log, signer, 4, r"records 4\.\.7 do not match the checkpoint signed at size 8")


def test_deleted_row(log: AuditLog, signer: NoteSigner) -> None:
    with log.store.engine.begin() as connection:
        connection.execute(delete(audit_log).where(audit_log.c.idx == 3))
    fails_at(log, signer, 3, r"record 3 is missing: a row was deleted")


@pytest.mark.parametrize("index", [4, 5, RECORDS - 2])  # last of a page, middle, end
def test_deleted_row_with_the_later_rows_moved_down(
    log: AuditLog, signer: NoteSigner, paged: None, index: int
) -> None:
    engine = log.store.engine
    follower = rows(engine)[index + 1]["record_id"]
    with engine.begin() as connection:
        connection.execute(delete(audit_log).where(audit_log.c.idx == index))
        connection.execute(delete(audit_contents).where(audit_contents.c.idx == index))
    move(engine, index + 1, -1)
    error = fails_at(
        log,
        signer,
        index,
        rf"^record {index} was deleted: the records after it moved down by one "
        rf"\(the row now at {index}, {follower}, was signed at index {index + 1}\)$",
    )
    assert error.record_id is None  # the deleted record's id went with its row


def test_deleted_rows_with_the_later_rows_moved_down(log: AuditLog, signer: NoteSigner) -> None:
    engine = log.store.engine
    with engine.begin() as connection:
        connection.execute(delete(audit_log).where(audit_log.c.idx.in_([5, 6])))
        connection.execute(delete(audit_contents).where(audit_contents.c.idx.in_([5, 6])))
    move(engine, 7, -2)
    fails_at(
        log,
        signer,
        5,
        r"^records 5\.\.6 were deleted: the records after them moved down by 2 "
        r"\(the row now at 5, .*, was signed at index 7\)$",
    )


def test_swapped_rows(log: AuditLog, signer: NoteSigner) -> None:
    engine = log.store.engine
    before = rows(engine)
    with engine.begin() as connection:
        connection.execute(delete(audit_log).where(audit_log.c.idx.in_([6, 7])))
        connection.execute(insert(audit_log), [{**before[7], "idx": 6}, {**before[6], "idx": 7}])
    fails_at(
        log,
        signer,
        6,
        rf"^record 6 \({before[7]['record_id']}\) was changed: it holds the record signed "
        r"at index 7 \(rows reordered\)$",
    )


def test_truncated_tail(log: AuditLog, signer: NoteSigner) -> None:
    with log.store.engine.begin() as connection:
        connection.execute(delete(audit_log).where(audit_log.c.idx >= 10))
        connection.execute(delete(audit_contents).where(audit_contents.c.idx >= 10))
    fails_at(log, signer, 10, r"truncated .* covers 12 records, but only 10 exist")


def test_inserted_row_in_the_middle(log: AuditLog, signer: NoteSigner, paged: None) -> None:
    # A forged copy of record 4 (another id, the same stale leaf hash) at 4; the
    # genuine record 4 and all after it moved up by one.
    engine = log.store.engine
    before = rows(engine)
    forged = content_record(99)
    move(engine, 4, 1)
    with engine.begin() as connection:
        connection.execute(
            insert(audit_log),
            [{**before[4], "idx": 4, "record_id": forged.record_id, "request_id": "forged"}],
        )
    error = fails_at(
        log,
        signer,
        4,
        rf"^record 4 \({forged.record_id}\) was inserted: the records after it moved up by "
        rf"one \(the row now at 5, {before[4]['record_id']}, was signed at index 4\)$",
    )
    assert error.record_id == forged.record_id


@pytest.mark.parametrize("index", [4, 5])  # last of a page (its moved row on the next), middle
def test_inserted_row_with_its_own_leaf_hash(
    log: AuditLog, signer: NoteSigner, paged: None, index: int
) -> None:
    # The forged row hashes to its own leaf at its index, so only the moved genuine
    # record after it fails: it must not be blamed as changed.
    engine = log.store.engine
    genuine = rows(engine)[index]["record_id"]
    move(engine, index, 1)
    forged = forge(engine, index, 99)
    error = fails_at(
        log,
        signer,
        index,
        rf"^record {index} \({forged}\) was inserted: the records after it moved up by one "
        rf"\(the row now at {index + 1}, {genuine}, was signed at index {index}\)$",
    )
    assert error.record_id == forged


def test_inserted_rows_with_their_own_leaf_hashes(log: AuditLog, signer: NoteSigner) -> None:
    engine = log.store.engine
    move(engine, 5, 2)
    first = forge(engine, 5, 98)
    forge(engine, 6, 99)
    fails_at(
        log,
        signer,
        5,
        rf"^records 5\.\.6 were inserted \(first: {first}\): the records after them moved up "
        r"by 2 \(the row now at 7, .*, was signed at index 5\)$",
    )


def test_inserted_row_just_before_a_checkpoint(log: AuditLog, signer: NoteSigner) -> None:
    # The forged row at 7 passes its own leaf check; the checkpoint at 8 fails first.
    engine = log.store.engine
    move(engine, 7, 1)
    forged = forge(engine, 7, 99)
    fails_at(
        log,
        signer,
        7,
        rf"^record 7 \({forged}\) was inserted: the records after it moved up by one "
        r"\(the row now at 8, .*, was signed at index 7\)$",
    )


def test_row_inserted_past_the_end_leaves_a_gap(log: AuditLog, signer: NoteSigner) -> None:
    engine = log.store.engine
    last = rows(engine)[RECORDS - 1]
    with engine.begin() as connection:
        connection.execute(insert(audit_log), [{**last, "idx": RECORDS + 3, "record_id": "f" * 36}])
    fails_at(log, signer, RECORDS, rf"record {RECORDS} is missing")


def test_replaced_ciphertext(log: AuditLog, signer: NoteSigner) -> None:
    engine = log.store.engine
    with engine.connect() as connection:
        other = connection.execute(
            select(audit_contents.c.envelope).where(audit_contents.c.idx == 1)
        ).scalar_one()
    with engine.begin() as connection:
        connection.execute(
            update(audit_contents).where(audit_contents.c.idx == 2).values(envelope=other)
        )
    fails_at(log, signer, 2, r"record 2 .* encrypted content was replaced")


def test_forged_checkpoint_with_another_key(log: AuditLog, signer: NoteSigner) -> None:
    engine = log.store.engine
    forger = NoteSigner.generate(ORIGIN)
    with engine.connect() as connection:
        latest = connection.execute(
            select(audit_checkpoints).where(audit_checkpoints.c.tree_size == 8)
        ).one()
    note = sign_checkpoint(Checkpoint(ORIGIN, 8, bytes(latest.root_hash)), forger)
    with engine.begin() as connection:
        connection.execute(
            update(audit_checkpoints).where(audit_checkpoints.c.tree_size == 8).values(note=note)
        )
    fails_at(log, signer, None, r"checkpoint at tree size 8 is forged")


def test_forged_checkpoint_text(log: AuditLog, signer: NoteSigner) -> None:
    engine = log.store.engine
    with engine.connect() as connection:
        note = connection.execute(
            select(audit_checkpoints.c.note).where(audit_checkpoints.c.tree_size == 8)
        ).scalar_one()
    with engine.begin() as connection:
        connection.execute(
            update(audit_checkpoints)
            .where(audit_checkpoints.c.tree_size == 8)
            .values(note=note.replace(f"{ORIGIN}\n8\n", f"{ORIGIN}\n9\n"))
        )
    fails_at(log, signer, None, r"checkpoint at tree size 8 is forged")


def test_rolled_back_log_is_caught_by_an_outside_checkpoint(
    log: AuditLog, signer: NoteSigner
) -> None:
    engine = log.store.engine
    witness_copy = SqlAuditStore(engine).latest_checkpoint()
    assert witness_copy is not None and witness_copy.tree_size == RECORDS
    # Roll back: drop the last batch and its checkpoint; what is left is self-consistent.
    with engine.begin() as connection:
        connection.execute(delete(audit_log).where(audit_log.c.idx >= 8))
        connection.execute(delete(audit_contents).where(audit_contents.c.idx >= 8))
        connection.execute(delete(audit_checkpoints).where(audit_checkpoints.c.tree_size > 8))
    assert verify(log, signer).records == 8  # undetectable from the inside alone ...
    # ... but not against a copy a witness (or the compliance officer) kept.
    fails_at(log, signer, 8, r"outside checkpoint covers 12 records", external=witness_copy.note)


def test_outside_checkpoint_with_a_different_root_is_a_split_view(
    log: AuditLog, signer: NoteSigner
) -> None:
    forked = sign_checkpoint(Checkpoint(ORIGIN, 8, b"\x01" * 32), signer)
    fails_at(log, signer, None, r"split view", external=forked)


def test_outside_checkpoint_matches(log: AuditLog, signer: NoteSigner) -> None:
    witness = SqlAuditStore(log.store.engine).latest_checkpoint()
    assert witness is not None
    log.append(content_record(50))
    report = verify(log, signer, external=witness.note)
    assert report.external_checkpoint == RECORDS
    assert report.uncovered == 1


def test_rolled_back_checkpoint_order(log: AuditLog, signer: NoteSigner) -> None:
    # An older checkpoint re-dated after a newer one: sizes must only grow.
    engine = log.store.engine
    with engine.connect() as connection:
        newest = connection.execute(select(func.max(audit_checkpoints.c.created_at))).scalar_one()
    with engine.begin() as connection:
        connection.execute(
            update(audit_checkpoints)
            .where(audit_checkpoints.c.tree_size == 4)
            .values(created_at=newest.replace(year=newest.year + 1))
        )
    fails_at(log, signer, None, r"checkpoint rolled back: size 4 signed after size 12")


def test_writer_refuses_to_extend_a_log_whose_frontier_was_tampered(
    log: AuditLog, signer: NoteSigner
) -> None:
    engine = log.store.engine
    with engine.begin() as connection:
        connection.execute(
            update(audit_checkpoints)
            .where(audit_checkpoints.c.tree_size == RECORDS)
            .values(frontier=b"\x00" * 64)
        )
    with pytest.raises(VerificationError, match="frontier"):
        build_log(engine, signer=signer)


def test_parallel_verify_agrees_and_finds_the_same_record(
    migrated_engine: Engine, signer: NoteSigner
) -> None:
    from tests.support.audit import make_record

    log = build_log(migrated_engine, signer=signer)
    log.append_batch([make_record(f"r{i}") for i in range(6000)])  # two pages
    log.checkpoint()
    assert verify(log, signer, jobs=2) == verify(log, signer)
    with migrated_engine.begin() as connection:
        connection.execute(update(audit_log).where(audit_log.c.idx == 5500).values(path="/x"))
    fails_at(log, signer, 5500, r"record 5500 .* was changed", jobs=2)
