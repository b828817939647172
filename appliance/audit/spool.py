"""The durable local spool: audit records on local disk, before they are sealed.

A gateway process appends records here and answers once they are on disk (one
``write`` and one ``fdatasync`` per group of records); a drainer
(:mod:`appliance.audit.spool_writer`) later seals them into the Merkle log and the
database in large batches. The spool is the record's durability; the log is its
tamper evidence.

Layout: ``<directory>/slot-<k>/<counter>.seg``. Each gateway process holds one slot
(an exclusive ``flock`` on ``slot-<k>.lock``), so several processes share a directory
without sharing a file; a slot whose process died is drained by the next process that
can lock it. A slot is a sequence of segments: a process always starts a new segment
(it never appends after a tail a crash may have torn) and rolls to a new one when the
current one is large. A segment is a sequence of frames::

    length (u32, big-endian) | crc32 of payload (u32) | payload (canonical JSON)

Replay is idempotent: the drainer skips records whose id the log already holds, so a
crash between the database commit and the deletion of a drained segment repeats
nothing. A torn tail (a frame cut short, or whose checksum fails, with nothing valid
after it) is a write that was never acknowledged, and is ignored.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from appliance.audit.records import (
    AuditEvent,
    AuditRecord,
    Outcome,
    canonical_json,
    metadata_of,
)

__all__ = [
    "Frame",
    "Spool",
    "SpoolFull",
    "decode_record",
    "encode_record",
    "frame_bytes",
    "read_frames",
    "spooled_records",
    "unsealable_records",
]

logger = logging.getLogger("appliance.audit.spool")

_HEADER = struct.Struct(">II")
_MAX_FRAME = 64 * 1024 * 1024  # a length beyond this is garbage, not a record
_SUFFIX = ".seg"


class SpoolFull(OSError):
    """The spool holds ``max_bytes`` of records the drainer has not sealed yet."""


def encode_record(record: AuditRecord) -> bytes:
    """The record as a spool payload. Raises ValueError/TypeError (and friends) for a
    record that could not be sealed either, so it is refused before it is acknowledged."""
    # Content as sealing would encode it (NaN refused there too), metadata as the leaf.
    return canonical_json({"meta": metadata_of(record), "content": record.content})


def decode_record(payload: bytes) -> AuditRecord:
    """The record :func:`encode_record` wrote; its metadata (so its leaf) is unchanged."""
    value = json.loads(payload)
    meta: dict[str, Any] = value["meta"]
    return AuditRecord(
        record_id=meta["record_id"],
        recorded_at=datetime.fromisoformat(meta["recorded_at"]),
        event=AuditEvent(meta["event"]),
        request_id=meta["request_id"],
        http_method=meta["http_method"],
        path=meta["path"],
        status_code=meta["status_code"],
        outcome=Outcome(meta["outcome"]),
        subject=meta["subject"],
        username=meta["username"],
        auth_method=meta["auth_method"],
        key_id=meta["key_id"],
        client_addr=meta["client_addr"],
        model=meta["model"],
        params=meta["params"],
        denial_reason=meta["denial_reason"],
        prompt_tokens=meta["prompt_tokens"],
        completion_tokens=meta["completion_tokens"],
        latency_ms=meta["latency_ms"],
        team=meta["team"],
        content=value["content"],
    )


def frame_bytes(payload: bytes) -> bytes:
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


@dataclass(frozen=True)
class Frame:
    """One record's payload, and the offset just past it in its segment."""

    payload: bytes
    end: int


def read_frames(data: bytes) -> tuple[list[Frame], int, bool]:
    """The whole frames in ``data``; the offset where reading stopped;
    and whether it stopped at corruption rather than at a torn tail. A write cut short
    leaves a frame that runs past the end of the data (or zeros); a frame that fails
    its checksum with bytes after it, or an impossible length, is corruption."""
    frames: list[Frame] = []
    offset = 0
    corrupt = False
    while offset + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, offset)
        end = offset + _HEADER.size + length
        if length == 0:
            corrupt = any(data[offset:])  # zeros are a torn tail, anything else is not
            break
        if length > _MAX_FRAME:
            corrupt = True
            break
        if end > len(data):
            break
        payload = data[offset + _HEADER.size : end]
        if zlib.crc32(payload) != crc:
            corrupt = end < len(data)
            break
        frames.append(Frame(payload, end))
        offset = end
    return frames, offset, corrupt


@dataclass
class _Segment:
    path: Path
    read_offset: int = 0


class Spool:
    """One process's slot of a spool directory: append (durably) and read back.

    Not thread-safe: the writer and the drainer call it from one thread at a time
    (:class:`~appliance.audit.spool_writer.SpoolingWriter` serialises them)."""

    def __init__(
        self, directory: Path, *, segment_bytes: int = 4 << 20, max_bytes: int = 1 << 30
    ) -> None:
        self._directory = directory
        self._segment_bytes = segment_bytes
        self._max_bytes = max_bytes
        self._locks: list[int] = []
        self._segments: list[_Segment] = []  # oldest first; the last is being written
        self._active_fd: int | None = None
        self._active_size = 0
        self._durable_size = 0  # bytes of the active segment known to be on disk
        self._counter = 0
        self._slot: Path | None = None

    @property
    def directory(self) -> Path:
        return self._directory

    @property
    def slot(self) -> Path:
        if self._slot is None:
            raise RuntimeError("Spool.open() first")
        return self._slot

    # -- opening ----------------------------------------------------------------------

    def open(self) -> None:
        """Take a free slot, adopt the segments of slots nobody holds, start a segment."""
        self._directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        adopted: list[_Segment] = []
        slot_number = 0
        while self._slot is None:
            slot = self._directory / f"slot-{slot_number}"
            if self._try_lock(slot):
                self._slot = slot
            slot_number += 1
        # Slots left by processes that are gone (fewer workers now, or a crash): their
        # records are drained first, by this process, under their lock.
        for lock_path in sorted(self._directory.glob("slot-*.lock")):
            slot = lock_path.with_suffix("")
            if slot != self._slot and self._try_lock(slot):
                adopted.extend(_Segment(path) for path in _segments_of(slot))
        own = [_Segment(path) for path in _segments_of(self._slot)]
        self._segments = adopted + own
        self._counter = max((_counter_of(s.path) for s in own), default=0)
        self._start_segment()

    def _try_lock(self, slot: Path) -> bool:
        fd = os.open(slot.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        slot.mkdir(exist_ok=True, mode=0o700)
        self._locks.append(fd)
        return True

    def _start_segment(self) -> None:
        if self._active_fd is not None:
            os.close(self._active_fd)
            self._active_fd = None
        self._counter += 1
        path = self.slot / f"{self._counter:012d}{_SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        self._segments.append(_Segment(path))
        self._active_fd = fd
        self._active_size = 0
        self._durable_size = 0
        _sync_directory(self.slot)  # the new name survives a crash

    def close(self) -> None:
        if self._active_fd is not None:
            os.close(self._active_fd)
            self._active_fd = None
        for fd in self._locks:
            os.close(fd)  # closing releases the flock
        self._locks = []

    # -- writing ----------------------------------------------------------------------

    def append(self, payloads: list[bytes]) -> None:
        """Write ``payloads`` and make them durable (one write, one fdatasync); raises
        OSError (SpoolFull when the undrained records would pass ``max_bytes``)."""
        if self._slot is None:
            raise OSError("the audit spool is not open")
        data = b"".join(frame_bytes(payload) for payload in payloads)
        if self.pending_bytes() + len(data) > self._max_bytes:
            raise SpoolFull(
                f"the audit spool holds {self.pending_bytes()} bytes not yet sealed "
                f"(audit.spool.max_bytes {self._max_bytes})"
            )
        if self._active_fd is None or self._active_size >= self._segment_bytes:
            # (None: the last write failed; the disk may have room again.)
            self._start_segment()
        assert self._active_fd is not None
        written = 0
        try:
            while written < len(data):
                written += os.write(self._active_fd, data[written:])
            os.fdatasync(self._active_fd)
        except OSError:
            # Part of the batch may be on disk unsynced: start over in a new segment, so
            # the reader sees a torn tail that is never followed by acknowledged frames.
            self._abandon_active()
            raise
        self._active_size += len(data)
        self._durable_size = self._active_size

    def _abandon_active(self) -> None:
        if self._active_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._active_fd)
            self._active_fd = None

    def pending_bytes(self) -> int:
        """Bytes written and not yet drained (what ``max_bytes`` bounds)."""
        total = 0
        for segment in self._segments:
            size = self._active_size if self._is_active(segment) else _size(segment.path)
            total += max(0, size - segment.read_offset)
        return total

    def _is_active(self, segment: _Segment) -> bool:
        return segment is self._segments[-1] and self._active_fd is not None

    # -- reading (the drainer) --------------------------------------------------------

    def read(self, limit: int) -> list[Frame]:
        """Up to ``limit`` durable frames not yet drained, oldest first, all from one
        segment; :meth:`consumed` moves past them once they are sealed. Segments that
        are finished and drained are deleted on the way."""
        while self._segments:
            segment = self._segments[0]
            active = self._is_active(segment)
            with open(segment.path, "rb") as file:
                file.seek(segment.read_offset)
                if active:
                    data = file.read(max(0, self._durable_size - segment.read_offset))
                else:
                    data = file.read()
            frames, stop, corrupt = read_frames(data)
            if frames:
                base = segment.read_offset
                return [Frame(f.payload, base + f.end) for f in frames[:limit]]
            if active or len(self._segments) == 1:
                return []
            if corrupt:
                kept = segment.path.with_suffix(".corrupt")
                logger.critical(
                    "audit spool segment %s is corrupt at offset %d; kept as %s for "
                    "inspection, the records after that offset were not sealed",
                    segment.path, segment.read_offset + stop, kept,
                )  # fmt: skip
                segment.path.rename(kept)
            else:
                segment.path.unlink(missing_ok=True)
            self._segments.pop(0)
        return []

    def consumed(self, frames: list[Frame]) -> None:
        """The frames :meth:`read` returned (from the oldest segment) are sealed."""
        if frames:
            self._segments[0].read_offset = frames[-1].end

    def quarantine(self, payloads: list[bytes]) -> Path:
        """Keep records the log refused to seal (not expected: they are checked before
        they are spooled) in ``unsealable.seg`` for the operator, durably."""
        path = self._directory / "unsealable.seg"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, b"".join(frame_bytes(payload) for payload in payloads))
            os.fdatasync(fd)
        finally:
            os.close(fd)
        return path

    def segments(self) -> Iterator[Path]:
        return (segment.path for segment in self._segments)


def spooled_records(directory: Path) -> Iterator[AuditRecord]:
    """Every record in every slot of ``directory`` (read only, no lock), drained or
    not: ``audit verify`` asks the log which of them it holds."""
    if not directory.is_dir():
        return
    for slot in sorted(path for path in directory.glob("slot-*") if path.is_dir()):
        for path in _segments_of(slot):
            yield from _records_in(path)


def unsealable_records(directory: Path) -> list[AuditRecord | None]:
    """What the drainer kept aside (:meth:`Spool.quarantine`): each record, or None for
    a frame that does not read back as one."""
    path = directory / "unsealable.seg"
    if not path.is_file():
        return []
    frames, _stop, _corrupt = read_frames(path.read_bytes())
    kept: list[AuditRecord | None] = []
    for frame in frames:
        try:
            kept.append(decode_record(frame.payload))
        except (ValueError, KeyError, TypeError):
            kept.append(None)
    return kept


def _records_in(path: Path) -> Iterator[AuditRecord]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:  # drained and deleted while we looked
        return
    frames, _stop, _corrupt = read_frames(data)
    for frame in frames:
        yield decode_record(frame.payload)


def _segments_of(slot: Path) -> list[Path]:
    return sorted(slot.glob(f"*{_SUFFIX}"), key=_counter_of)


def _counter_of(path: Path) -> int:
    try:
        return int(path.stem)
    except ValueError:
        return 0


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _sync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
