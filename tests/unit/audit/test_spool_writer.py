"""The spooling sink in front of a real log: acknowledged when spooled, sealed by the
drainer, replayed once after a crash, and fail-closed when the spool cannot write."""

from __future__ import annotations

import asyncio
import errno
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from appliance.audit.checkpoint import NoteSigner
from appliance.audit.log import AuditLog, RecordRejected
from appliance.audit.records import AuditEvent
from appliance.audit.spool import Spool, encode_record
from appliance.audit.spool_writer import SpoolingWriter
from appliance.audit.verify import verify_log
from tests.support.audit import ORIGIN, build_log, content_record, make_record


def _writer(log: AuditLog, directory: Path, **options: float) -> SpoolingWriter:
    return SpoolingWriter(log, Spool(directory), checkpoint_interval_s=0.2, **options)


def _ids(log: AuditLog) -> list[str]:
    return [record.record_id for record in log.store.latest(10_000)]


def test_records_are_acknowledged_spooled_then_sealed_and_verified(
    migrated_engine: Engine, signer: NoteSigner, master_key: bytes, tmp_path: Path
) -> None:
    log = build_log(migrated_engine, signer=signer, master_key=master_key)
    records = [content_record(i) for i in range(40)]

    async def main() -> None:
        writer = _writer(log, tmp_path / "spool")
        await writer.start()
        results = await asyncio.gather(*(writer.append(r) for r in records))
        assert results == [None] * len(records)  # no leaf index: the drainer picks it
        await writer.wait_drained()
        await writer.stop()

    asyncio.run(main())
    assert sorted(_ids(log)) == sorted(r.record_id for r in records)
    read_back = {r.record_id: r for r in log.store.latest(100)}
    assert read_back[records[5].record_id] == records[5]
    verify_log(log.store, signer.verifier(), origin=ORIGIN)
    assert not list((tmp_path / "spool").glob("slot-*/*.corrupt"))


def test_a_replayed_spool_seals_each_record_once(
    migrated_engine: Engine, signer: NoteSigner, master_key: bytes, tmp_path: Path
) -> None:
    """A crash after the database commit and before the spool moved on: the next start
    replays the segment, and the log skips the records it already holds."""
    log = build_log(migrated_engine, signer=signer, master_key=master_key)
    records = [content_record(i) for i in range(6)]
    spool = Spool(tmp_path)
    spool.open()
    spool.append([encode_record(r) for r in records])
    log.append_each(records[:4])  # sealed, but the spool never heard of it
    spool.close()

    async def main() -> None:
        writer = _writer(build_log(migrated_engine, signer=signer, master_key=master_key), tmp_path)
        await writer.start()
        await writer.wait_drained()
        await writer.stop()

    asyncio.run(main())
    assert sorted(_ids(log)) == sorted(r.record_id for r in records)
    verify_log(log.store, signer.verifier(), origin=ORIGIN)


def test_requests_go_on_while_the_database_is_away_and_are_sealed_after(
    migrated_engine: Engine,
    signer: NoteSigner,
    master_key: bytes,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = build_log(migrated_engine, signer=signer, master_key=master_key)
    real_append = log.append_each
    down = True
    attempts = 0

    def flaky(records, **options):  # type: ignore[no-untyped-def]
        nonlocal attempts
        attempts += 1
        if down:
            raise OperationalError("INSERT", {}, Exception("database is away"))
        return real_append(records, **options)

    monkeypatch.setattr(log, "append_each", flaky)
    records = [make_record(f"r{i}") for i in range(10)]

    async def main() -> None:
        nonlocal down
        writer = _writer(log, tmp_path)
        await writer.start()
        await asyncio.gather(*(writer.append(r) for r in records))  # acknowledged
        while attempts < 2:
            await asyncio.sleep(0.01)
        assert writer.drain_failures >= 1
        assert writer.pending_bytes() > 0
        down = False
        await writer.wait_drained()
        await writer.stop()

    asyncio.run(main())
    assert sorted(_ids(log)) == sorted(r.record_id for r in records)


@pytest.mark.parametrize(
    ("code", "message"),
    [(errno.ENOSPC, "No space left on device"), (errno.EROFS, "Read-only file system")],
    ids=["disk-full", "read-only"],
)
def test_a_spool_that_cannot_write_fails_the_caller_and_recovers(
    code: int,
    message: str,
    migrated_engine: Engine,
    signer: NoteSigner,
    master_key: bytes,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import appliance.audit.spool as module

    log = build_log(migrated_engine, signer=signer, master_key=master_key)
    real_write = module.os.write

    def failing(fd: int, data: bytes) -> int:
        raise OSError(code, message)

    async def main() -> None:
        writer = _writer(log, tmp_path)
        await writer.start()
        await writer.append(make_record("before"))
        monkeypatch.setattr(module.os, "write", failing)
        with pytest.raises(OSError, match=message):
            await writer.append(make_record("refused"))
        monkeypatch.setattr(module.os, "write", real_write)
        await writer.append(make_record("after"))
        await writer.wait_drained()
        await writer.stop()

    asyncio.run(main())
    assert sorted(r.request_id for r in log.store.latest(10)) == ["after", "before"]


def test_a_record_that_cannot_be_sealed_is_refused_alone(
    migrated_engine: Engine, signer: NoteSigner, master_key: bytes, tmp_path: Path
) -> None:
    log = build_log(migrated_engine, signer=signer, master_key=master_key)
    poisoned = content_record(2, content={"x": float("nan")})
    innocent = content_record(3, event=AuditEvent.COMPLETION)

    async def main() -> list[object]:
        writer = _writer(log, tmp_path)
        await writer.start()
        results = await asyncio.gather(
            writer.append(poisoned), writer.append(innocent), return_exceptions=True
        )
        await writer.wait_drained()
        await writer.stop()
        return results

    results = asyncio.run(main())
    assert isinstance(results[0], RecordRejected)
    assert results[1] is None
    assert _ids(log) == [innocent.record_id]


def test_a_checkpoint_covers_the_drained_records_when_the_log_goes_idle(
    migrated_engine: Engine, signer: NoteSigner, master_key: bytes, tmp_path: Path
) -> None:
    log = build_log(migrated_engine, signer=signer, master_key=master_key)

    async def main() -> None:
        writer = _writer(log, tmp_path)
        await writer.start()
        await writer.append(make_record("idle"))
        await writer.wait_drained()
        for _ in range(200):
            if not log.uncovered:
                break
            await asyncio.sleep(0.05)
        assert not log.uncovered
        await writer.stop()

    asyncio.run(main())


def test_a_frame_that_does_not_read_back_is_kept_aside_and_the_drain_goes_on(
    migrated_engine: Engine, signer: NoteSigner, master_key: bytes, tmp_path: Path
) -> None:
    from appliance.audit.spool import unsealable_records

    log = build_log(migrated_engine, signer=signer, master_key=master_key)
    before, after = make_record("before"), make_record("after")
    spool = Spool(tmp_path)
    spool.open()
    spool.append([encode_record(before), b'{"not": "a record"}', encode_record(after)])
    spool.close()

    async def main() -> None:
        writer = _writer(log, tmp_path)
        await writer.start()
        await writer.wait_drained()
        await writer.stop()

    asyncio.run(main())
    assert sorted(r.request_id for r in log.store.latest(10)) == ["after", "before"]
    assert unsealable_records(tmp_path) == [None]
