"""The spool file: frames, torn tails, slots, segments, replay."""

from __future__ import annotations

import errno
import math
from pathlib import Path

import pytest

from appliance.audit.records import AuditEvent, Outcome, SealedEntry, leaf_bytes
from appliance.audit.spool import (
    Spool,
    SpoolFull,
    decode_record,
    encode_record,
    frame_bytes,
    read_frames,
    spooled_records,
)
from tests.support.audit import content_record, make_record


def _leaf(record):  # the leaf a record would get at index 7
    return leaf_bytes(SealedEntry(7, record, None, None))


def test_a_record_reads_back_with_the_same_leaf_and_content() -> None:
    record = content_record(
        3,
        params={"temperature": math.inf, "stop": ["é", "\u27e6"], "n": 2},
        event=AuditEvent.COMPLETION,
        outcome=Outcome.OK,
        prompt_tokens=5,
        completion_tokens=9,
        latency_ms=12,
        team="research",
        key_id="k1",
        client_addr="10.0.0.1",
    )
    back = decode_record(encode_record(record))
    assert _leaf(back) == _leaf(record)
    assert back.content == record.content
    assert back.recorded_at == record.recorded_at


def test_content_sealing_would_refuse_is_refused_when_spooled() -> None:
    record = content_record(1, content={"messages": [math.nan]})
    with pytest.raises(ValueError):
        encode_record(record)


def test_every_torn_tail_is_ignored_and_nothing_before_it_is_lost() -> None:
    payloads = [encode_record(content_record(i)) for i in range(3)]
    data = b"".join(frame_bytes(p) for p in payloads)
    ends = []
    position = 0
    for payload in payloads:
        position += len(frame_bytes(payload))
        ends.append(position)
    for cut in range(len(data) + 1):
        frames, stop, corrupt = read_frames(data[:cut])
        whole = sum(1 for end in ends if end <= cut)
        assert [f.payload for f in frames] == payloads[:whole]
        assert stop == (ends[whole - 1] if whole else 0)
        assert not corrupt


def test_a_changed_byte_under_an_acknowledged_frame_is_reported_as_corruption() -> None:
    payloads = [encode_record(content_record(i)) for i in range(3)]
    data = bytearray(b"".join(frame_bytes(p) for p in payloads))
    data[len(frame_bytes(payloads[0])) + 20] ^= 0x01  # inside the second frame
    frames, _stop, corrupt = read_frames(bytes(data))
    assert [f.payload for f in frames] == payloads[:1]
    assert corrupt


def _open(directory: Path, **options: int) -> Spool:
    spool = Spool(directory, **options)
    spool.open()
    return spool


def test_appended_records_are_read_once_and_survive_a_reopen(tmp_path: Path) -> None:
    spool = _open(tmp_path)
    records = [content_record(i) for i in range(5)]
    spool.append([encode_record(r) for r in records[:2]])
    spool.append([encode_record(r) for r in records[2:]])
    first = spool.read(3)
    assert [decode_record(f.payload).record_id for f in first] == [r.record_id for r in records[:3]]
    spool.consumed(first)
    spool.close()  # a crash: records 3 and 4 were never sealed

    again = _open(tmp_path)
    rest = []
    while frames := again.read(10):
        rest.extend(decode_record(f.payload).record_id for f in frames)
        again.consumed(frames)
    # The consumed offset lives in memory only: replay repeats the whole old segment,
    # which the drainer makes harmless (the log skips ids it holds).
    assert rest == [r.record_id for r in records]
    assert again.pending_bytes() == 0


def test_drained_segments_are_deleted_and_the_spool_rolls_over(tmp_path: Path) -> None:
    spool = _open(tmp_path, segment_bytes=4096)
    for i in range(20):
        spool.append([encode_record(content_record(i))])
    assert len(list(spool.segments())) > 2
    seen = 0
    while frames := spool.read(4):
        seen += len(frames)
        spool.consumed(frames)
    assert seen == 20
    assert len(list(spool.segments())) == 1  # only the one being written is kept
    assert len(list(spool.slot.glob("*.seg"))) == 1


def test_two_processes_get_two_slots_and_a_dead_ones_slot_is_adopted(tmp_path: Path) -> None:
    first = _open(tmp_path)
    second = _open(tmp_path)
    assert first.slot != second.slot
    second.append([encode_record(make_record("orphan"))])
    second.close()  # its process is gone; its record is not sealed
    third = _open(tmp_path)
    assert third.slot == second.slot  # the free slot is reused...
    frames = third.read(10)
    assert [decode_record(f.payload).request_id for f in frames] == ["orphan"]
    first.close()
    fourth = _open(tmp_path)  # ...and a slot nobody holds is adopted by whoever starts
    assert fourth.slot == first.slot
    third.close()
    fourth.close()


def test_a_full_spool_refuses_new_records(tmp_path: Path) -> None:
    spool = _open(tmp_path, max_bytes=1 << 20)
    big = encode_record(content_record(1, content={"text": "x" * 300_000}))
    spool.append([big, big, big])
    with pytest.raises(SpoolFull, match="max_bytes"):
        spool.append([big])
    frames = spool.read(10)
    spool.consumed(frames)
    spool.append([big])  # drained: room again


def test_a_failed_write_is_an_error_and_the_next_write_starts_a_new_segment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = _open(tmp_path)
    spool.append([encode_record(make_record("before"))])
    import appliance.audit.spool as module

    real_write = module.os.write

    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(module.os, "write", full)
    with pytest.raises(OSError, match="No space"):
        spool.append([encode_record(make_record("lost"))])
    monkeypatch.setattr(module.os, "write", real_write)
    spool.append([encode_record(make_record("after"))])
    ids = []
    while frames := spool.read(10):
        ids.extend(decode_record(f.payload).request_id for f in frames)
        spool.consumed(frames)
    assert ids == ["before", "after"]
    assert len(list(spool.segments())) == 1


def test_spooled_records_lists_every_slot_without_locking(tmp_path: Path) -> None:
    one, two = _open(tmp_path), _open(tmp_path)
    one.append([encode_record(make_record("a"))])
    two.append([encode_record(make_record("b"))])
    assert sorted(r.request_id for r in spooled_records(tmp_path)) == ["a", "b"]
    one.close()
    two.close()
