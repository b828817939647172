"""appliance/audit/log.py, writer.py, access.py: sealing, group commit, acts."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select

from appliance.audit.access import (
    Actor,
    inclusion_proof_for,
    reveal,
    shred_subject,
)
from appliance.audit.checkpoint import NoteSigner
from appliance.audit.log import Appended, AuditLog
from appliance.audit.merkle import verify_inclusion
from appliance.audit.records import AuditEvent
from appliance.audit.verify import verify_log
from appliance.audit.writer import GroupCommitWriter
from appliance.db.tables import audit_contents, audit_subject_keys
from appliance.errors import InvalidRequest, VerificationError
from tests.support.audit import ORIGIN, T0, StepClock, build_log, content_record, make_record

AUDITOR = Actor(subject="cli:carol", username="carol")


def verify(log: AuditLog, signer: NoteSigner):  # type: ignore[no-untyped-def]
    return verify_log(log.store, signer.verifier(), origin=ORIGIN)


def test_content_is_sealed_not_stored_in_clear(log: AuditLog, migrated_engine: Engine) -> None:
    log.append(content_record(1))
    with migrated_engine.connect() as connection:
        (envelope,) = connection.execute(select(audit_contents.c.envelope)).scalars()
        (wrapped,) = connection.execute(select(audit_subject_keys.c.wrapped_key)).scalars()
    assert b"question 1" not in envelope
    assert len(wrapped) == 12 + 32 + 16  # nonce, key, tag: never the key in clear


def test_reveal_decrypts_and_records_the_viewer_and_reason(log: AuditLog) -> None:
    record = content_record(1)
    log.append(record)

    shown = reveal(log, record.record_id, actor=AUDITOR, reason="case 42")

    assert shown.status == "present"
    assert shown.content == {"messages": [{"role": "user", "content": "question 1"}]}
    (act,) = [r for r in log.store.latest() if r.event is AuditEvent.AUDIT_READ]
    assert act.username == "carol"
    assert act.params == {"record_id": record.record_id, "reason": "case 42"}
    with pytest.raises(InvalidRequest, match="reason"):
        reveal(log, record.record_id, actor=AUDITOR, reason=" ")


def test_shredding_erases_content_and_keeps_verify_green(log: AuditLog, signer: NoteSigner) -> None:
    alice = [content_record(i) for i in range(3)]
    bob = content_record(3, subject="apikey:bob")
    log.append_batch([*alice, bob])
    log.checkpoint()
    proof = inclusion_proof_for(log.store, alice[0].record_id, origin=ORIGIN, verifier=log.verifier)

    assert shred_subject(log, "apikey:alice", actor=AUDITOR, reason="GDPR art. 17 request") == 1

    assert reveal(log, alice[0].record_id, actor=AUDITOR, reason="check erasure").status == (
        "shredded"
    )
    assert reveal(log, bob.record_id, actor=AUDITOR, reason="check others").status == "present"
    log.checkpoint()
    report = verify(log, signer)
    assert report.records == 4 + 3  # the shred and two reads are records too
    assert report.uncovered == 0
    # The old proof still verifies against the old root: leaves did not change.
    again = inclusion_proof_for(log.store, alice[0].record_id, origin=ORIGIN, verifier=log.verifier)
    assert again["leaf_hash"] == proof["leaf_hash"]
    # New content for alice gets a new key (the old one stays destroyed).
    later = content_record(10)
    log.append(later)
    assert reveal(log, later.record_id, actor=AUDITOR, reason="new").status == "present"


def test_shred_in_another_process_reaches_a_running_writer(
    migrated_engine: Engine, signer: NoteSigner, master_key: bytes
) -> None:
    gateway = build_log(migrated_engine, signer=signer, master_key=master_key)
    cli = build_log(migrated_engine, signer=signer, master_key=master_key)
    gateway.append(content_record(1))
    shred_subject(cli, "apikey:alice", actor=AUDITOR, reason="erasure")
    later = content_record(2)
    gateway.append(later)  # must not reuse the cached, now destroyed key
    assert reveal(cli, later.record_id, actor=AUDITOR, reason="check").status == "present"


def test_inclusion_proof_document(log: AuditLog) -> None:
    records = [make_record(f"r{i}") for i in range(5)]
    log.append_batch(records)
    with pytest.raises(InvalidRequest, match="not covered"):
        inclusion_proof_for(log.store, records[3].record_id, origin=ORIGIN, verifier=log.verifier)
    log.checkpoint()
    doc = inclusion_proof_for(log.store, records[3].record_id, origin=ORIGIN, verifier=log.verifier)
    import base64
    import hashlib

    leaf = hashlib.sha256(b"\x00" + doc["leaf"].encode()).digest()
    verify_inclusion(
        leaf, doc["leaf_index"], doc["tree_size"],
        [base64.b64decode(h) for h in doc["inclusion_proof"]], base64.b64decode(doc["root_hash"]),
    )  # fmt: skip
    assert doc["tree_size"] == 5


def test_checkpoint_cadence(migrated_engine: Engine, signer: NoteSigner) -> None:
    log = build_log(migrated_engine, signer=signer, checkpoint_interval_s=0.0)
    log.append(make_record("a"))  # interval 0: every batch is checkpointed
    assert log.uncovered == 0
    slow = build_log(migrated_engine, signer=signer, checkpoint_interval_s=3600)
    slow.append(make_record("b"))
    assert slow.uncovered == 1
    assert slow.checkpoint() is not None
    assert slow.checkpoint() is None  # nothing new to sign
    assert [c.tree_size for c in slow.store.checkpoints()] == [1, 2]
    # A log opened with another signing key refuses to extend these checkpoints.
    with pytest.raises(VerificationError):
        build_log(migrated_engine, checkpoint_interval_s=3600)


def test_two_writers_interleave_without_losing_or_forking(
    migrated_engine: Engine, signer: NoteSigner, master_key: bytes
) -> None:
    first = build_log(migrated_engine, signer=signer, master_key=master_key)
    second = build_log(migrated_engine, signer=signer, master_key=master_key)
    for i in range(6):
        (first if i % 2 else second).append_batch([content_record(i), make_record(f"x{i}")])
        (second if i % 2 else first).checkpoint()
    report = verify(first, signer)
    assert report.records == 12
    assert report.uncovered == 0


def test_concurrent_writers_neither_fail_nor_fork(
    migrated_engine: Engine, signer: NoteSigner, master_key: bytes
) -> None:
    """Several gateway replicas appending to one database at the same time (the Helm
    chart runs several against PostgreSQL): every batch lands, none is refused."""
    import threading

    writers = [build_log(migrated_engine, signer=signer, master_key=master_key) for _ in range(4)]
    failures: list[BaseException] = []

    def write(w: int) -> None:
        try:
            for i in range(40):
                writers[w].append_batch([content_record(1000 * w + i), make_record(f"w{w}-{i}")])
        except BaseException as exc:  # collected for the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(len(writers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []
    writers[0].checkpoint()
    assert verify(writers[0], signer).records == 4 * 40 * 2


def test_reopening_resumes_from_the_checkpoint(
    migrated_engine: Engine, signer: NoteSigner, master_key: bytes
) -> None:
    log = build_log(migrated_engine, signer=signer, master_key=master_key)
    log.append_batch([make_record(f"r{i}") for i in range(5)])
    log.checkpoint()
    log.append(make_record("tail"))
    again = build_log(migrated_engine, signer=signer, master_key=master_key)
    assert (again.size, again.uncovered) == (6, 1)
    again.append(make_record("more"))
    again.checkpoint()
    assert verify(again, signer).records == 7


def test_group_commit_batches_concurrent_appends(log: AuditLog, signer: NoteSigner) -> None:
    sizes: list[int] = []
    original = log.append_each

    def spy(records):  # type: ignore[no-untyped-def]
        sizes.append(len(records))
        return original(records)

    log.append_each = spy  # type: ignore[method-assign]

    async def main() -> None:
        writer = GroupCommitWriter(log, max_records=50, max_wait_ms=20)
        await writer.start()
        await asyncio.gather(*(writer.append(make_record(f"r{i}")) for i in range(120)))
        await writer.stop()

    asyncio.run(main())
    assert sum(sizes) == 120
    assert len(sizes) < 120 and max(sizes) <= 50
    report = verify(log, signer)
    assert report.records == 120 and report.uncovered == 0  # stop() signs the tail


def test_a_record_the_database_refuses_fails_alone_and_the_log_goes_on(log: AuditLog) -> None:
    duplicate = make_record("dup")
    log.append(duplicate)

    async def main() -> list[object]:
        writer = GroupCommitWriter(log, max_records=10, max_wait_ms=20)
        await writer.start()
        results = await asyncio.gather(
            writer.append(make_record("a")), writer.append(duplicate), return_exceptions=True
        )
        await writer.append(make_record("b"))
        await writer.stop()
        return results

    first, repeated = asyncio.run(main())
    # The repeated record id fails its own caller only; its batch-mate commits.
    assert isinstance(first, Appended) and isinstance(repeated, Exception)
    assert [r.request_id for r in log.store.latest()] == ["b", "a", "dup"]


def test_append_after_stop_fails(log: AuditLog) -> None:
    async def main() -> None:
        writer = GroupCommitWriter(log)
        await writer.start()
        await writer.stop()
        with pytest.raises(OSError, match="not running"):
            await writer.append(make_record())

    asyncio.run(main())


def test_clock_is_a_parameter(migrated_engine: Engine) -> None:
    clock = StepClock()
    log = build_log(migrated_engine, clock=clock)
    first = log.now()
    assert log.now() > first


def test_checkpoint_times_never_go_backwards(migrated_engine: Engine, signer: NoteSigner) -> None:
    log = build_log(migrated_engine, signer=signer, clock=StepClock(T0 + timedelta(days=1)))
    log.append(make_record("a"))
    log.checkpoint()
    stepped_back = build_log(migrated_engine, signer=signer, clock=StepClock(T0))
    stepped_back.append(make_record("b"))
    stepped_back.checkpoint()
    times = [c.created_at for c in log.store.checkpoints()]
    assert times == sorted(times)
    assert verify(log, signer).checkpoints == 2
