"""The spooling audit sink: a record is acknowledged once it is in the local spool,
and sealed into the Merkle log and the database by a drainer, off the request path.

Compared with :class:`~appliance.audit.writer.GroupCommitWriter` (one database commit
per batch on the request path), a request waits for one ``write`` and one
``fdatasync`` of its batch, and the database may be slow or briefly away without
failing a request: records wait in the spool (up to ``audit.spool.max_bytes``, then
the gateway refuses with 503). What it gives up: a record is searchable, and covered
by a signed checkpoint, only once drained (normally milliseconds later), and the answer
carries no inline receipt, because the leaf index is chosen by the drainer (the
receipt proof endpoint finds the records by request id once they are sealed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time

import anyio.to_thread

from appliance.audit.batches import Batches, settle
from appliance.audit.log import AuditLog, RecordRejected
from appliance.audit.records import AuditRecord
from appliance.audit.spool import Frame, Spool, decode_record, encode_record
from appliance.audit.writer import may_be_one_record

__all__ = ["SpoolingWriter"]

logger = logging.getLogger("appliance.audit.spool")

_RETRY_FIRST_S = 0.05
_RETRY_MAX_S = 5.0


class SpoolingWriter:
    """An :class:`~appliance.audit.sink.AuditSink`: durable in the spool, sealed later."""

    def __init__(
        self,
        log: AuditLog,
        spool: Spool,
        *,
        max_records: int = 256,
        max_wait_ms: float = 0.0,
        drain_records: int = 1024,
        checkpoint_interval_s: float = 10.0,
        stop_timeout_s: float = 30.0,
    ) -> None:
        self._log = log
        self._spool = spool
        self._spool_lock = threading.Lock()  # the writer's and the drainer's threads
        self._batches: Batches[bytes, None] = Batches(max_records, max_wait_ms)
        self._drain_records = drain_records
        self._interval_s = checkpoint_interval_s
        self._stop_timeout_s = stop_timeout_s
        self._written = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._drainer: asyncio.Task[None] | None = None
        self._closing = False
        self.drain_failures = 0  # consecutive failed drains (metrics, tests)

    @property
    def log(self) -> AuditLog:
        return self._log

    @property
    def spool(self) -> Spool:
        return self._spool

    async def start(self) -> None:
        """Take a spool slot (and any slot left by a process that is gone), then start
        writing and draining; records spooled before a crash are sealed first."""
        if self._writer is not None:
            return
        try:
            await anyio.to_thread.run_sync(self._spool.open)
        except OSError as exc:
            raise OSError(
                f"cannot open the audit spool {self._spool.directory}: {exc.strerror or exc}"
            ) from exc
        loop = asyncio.get_running_loop()
        self._writer = loop.create_task(self._write_loop(), name="audit-spool-writer")
        self._drainer = loop.create_task(self._drain_loop(), name="audit-spool-drainer")

    async def append(self, record: AuditRecord) -> None:
        """Return once ``record`` is durable in the spool."""
        if self._closing or self._writer is None or self._writer.done():
            raise OSError("the audit spool writer is not running")
        try:
            payload = encode_record(record)
        except (ValueError, TypeError, UnicodeError, OverflowError, RecursionError) as exc:
            # What sealing would refuse later is refused now, before it is acknowledged.
            raise RecordRejected(
                f"audit record {record.record_id} cannot be sealed: {type(exc).__name__}"
            ) from exc
        await self._batches.submit(payload)

    def pending_bytes(self) -> int:
        """Spooled bytes not yet sealed into the log."""
        with self._spool_lock:
            return self._spool.pending_bytes()

    async def wait_drained(self, timeout_s: float = 30.0) -> None:
        """Until everything spooled so far is sealed (tests, shutdown); TimeoutError."""
        deadline = time.monotonic() + timeout_s
        while self.pending_bytes():
            if time.monotonic() > deadline:
                raise TimeoutError("the audit spool was not drained in time")
            self._written.set()
            await asyncio.sleep(0.01)

    async def checkpoint(self) -> None:
        await anyio.to_thread.run_sync(self._log.checkpoint)

    async def stop(self) -> None:
        """Spool what is queued, seal what is spooled (as far as the database lets us
        within ``stop_timeout_s``: the rest is sealed at the next start), stop."""
        if self._writer is None:
            return
        self._closing = True
        self._batches.close()
        with contextlib.suppress(Exception):
            await self._writer
        with contextlib.suppress(TimeoutError):
            await self.wait_drained(self._stop_timeout_s)
        assert self._drainer is not None
        self._drainer.cancel()
        with contextlib.suppress(BaseException):
            await self._drainer
        self._writer = self._drainer = None
        try:
            await anyio.to_thread.run_sync(self._log.checkpoint)
        except Exception:
            logger.exception("final audit checkpoint failed")
        await anyio.to_thread.run_sync(self._close_spool)

    def _close_spool(self) -> None:
        with self._spool_lock:
            self._spool.close()

    # -- the request side: group fdatasync ---------------------------------------------

    async def _write_loop(self) -> None:
        while True:
            got = await self._batches.next(3600.0)
            if got is None:
                continue
            batch, stop = got
            if batch:
                payloads = [payload for payload, _future in batch]
                try:
                    await anyio.to_thread.run_sync(self._append, payloads)
                except Exception as exc:
                    logger.error("audit spool write of %d records failed: %s", len(batch), exc)
                    for _payload, future in batch:
                        settle(future, exc)
                else:
                    for _payload, future in batch:
                        settle(future, None)
                    self._written.set()
            if stop:
                return

    def _append(self, payloads: list[bytes]) -> None:
        with self._spool_lock:
            self._spool.append(payloads)

    # -- the drainer: spool -> Merkle log and database ---------------------------------

    async def _drain_loop(self) -> None:
        retry_s = _RETRY_FIRST_S
        while True:
            # Cleared before reading: a write that lands meanwhile leaves it set, so
            # the wait below returns at once instead of missing that write.
            self._written.clear()
            try:
                frames = await anyio.to_thread.run_sync(self._read)
                if frames:
                    await anyio.to_thread.run_sync(self._seal, frames)
            except Exception as exc:
                self.drain_failures += 1
                logger.error(
                    "sealing spooled audit records failed (%s: %s); they stay in the "
                    "spool, retrying in %.2f s",
                    type(exc).__name__, exc, retry_s,
                )  # fmt: skip
                await asyncio.sleep(retry_s)
                retry_s = min(retry_s * 2, _RETRY_MAX_S)
                continue
            self.drain_failures = 0
            retry_s = _RETRY_FIRST_S
            if not frames:
                try:
                    await asyncio.wait_for(self._written.wait(), self._interval_s)
                except TimeoutError:
                    await self._cover_tail()

    def _read(self) -> list[Frame]:
        with self._spool_lock:
            return self._spool.read(self._drain_records)

    def _seal(self, frames: list[Frame]) -> None:
        readable: list[Frame] = []
        records: list[AuditRecord] = []
        unreadable: list[Frame] = []
        for frame in frames:
            # A frame whose checksum holds always decodes, unless the code that wrote
            # it differs: never let one such frame stop the drain, keep it aside.
            try:
                records.append(decode_record(frame.payload))
            except (ValueError, KeyError, TypeError):
                unreadable.append(frame)
            else:
                readable.append(frame)
        try:
            results = self._log.append_each(records, skip_recorded=True) if records else []
        except Exception as exc:
            if len(records) == 1 or not may_be_one_record(exc):
                raise
            # The database refused one record's values: seal them one by one.
            results = []
            for record in records:
                try:
                    results.extend(self._log.append_each([record], skip_recorded=True))
                except Exception as single:
                    if not may_be_one_record(single):
                        raise
                    results.append(RecordRejected(str(single)))
        refused = [
            (frame, record, result)
            for frame, record, result in zip(readable, records, results, strict=True)
            if isinstance(result, RecordRejected)
        ]
        with self._spool_lock:
            # Not expected (records are checked when spooled): kept aside, not lost.
            if unreadable:
                kept = self._spool.quarantine([frame.payload for frame in unreadable])
                logger.critical(
                    "%d spooled audit records could not be read back; kept in %s",
                    len(unreadable), kept,
                )  # fmt: skip
            if refused:
                kept = self._spool.quarantine([frame.payload for frame, _r, _e in refused])
                for _frame, record, error in refused:
                    logger.critical(
                        "spooled audit record %s (request %s) could not be sealed (%s); "
                        "kept in %s",
                        record.record_id, record.request_id, error, kept,
                    )  # fmt: skip
            self._spool.consumed(frames)

    async def _cover_tail(self) -> None:
        if not self._log.uncovered:
            return
        try:
            await anyio.to_thread.run_sync(self._log.checkpoint)
        except Exception:
            logger.exception("periodic audit checkpoint failed")
