"""Group commit: many concurrent appends, one transaction per batch.

A batch takes every record queued when it starts (up to ``max_records``), waiting at
most ``max_wait_ms`` for more (default 0: none); records that arrive while a batch
commits form the next one. So a lone request pays one commit and no wait, and under
load the batches grow by themselves.
Each caller's ``append`` returns only once its batch is committed, and raises if its
record is not durable (the gateway then refuses the request: fail closed).

Batch-mates are isolated: a record that cannot be sealed is left out of the batch and
only its own caller gets :class:`~appliance.audit.log.RecordRejected`; a batch the
database refuses for its data (not for being unreachable) is retried one record at a
time, so one caller's input never fails another caller's record. When the log is
idle the writer signs a checkpoint for records a cadence tick left uncovered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import anyio.to_thread
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError, StatementError

from appliance.audit.batches import Batches, settle
from appliance.audit.log import Appended, AuditLog, RecordRejected
from appliance.audit.records import AuditRecord

__all__ = ["GroupCommitWriter", "may_be_one_record"]

logger = logging.getLogger("appliance.audit.writer")

_Item = tuple[AuditRecord, "asyncio.Future[Appended]"]


class GroupCommitWriter:
    """An :class:`~appliance.audit.sink.AuditSink` in front of an :class:`AuditLog`."""

    def __init__(
        self,
        log: AuditLog,
        *,
        max_records: int = 256,
        max_wait_ms: float = 0.0,
        checkpoint_interval_s: float = 10.0,
    ) -> None:
        self._log = log
        self._interval_s = checkpoint_interval_s
        self._batches: Batches[AuditRecord, Appended] = Batches(max_records, max_wait_ms)
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def log(self) -> AuditLog:
        return self._log

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="audit-writer")

    async def append(self, record: AuditRecord) -> Appended:
        """Where the record went in, once it is durable."""
        if self._closed or self._task is None or self._task.done():
            raise OSError("the audit writer is not running")
        return await self._batches.submit(record)

    async def checkpoint(self) -> None:
        await anyio.to_thread.run_sync(self._log.checkpoint)

    async def stop(self) -> None:
        """Commit what is queued, sign a final checkpoint, stop."""
        if self._task is None:
            return
        self._closed = True
        self._batches.close()
        with contextlib.suppress(Exception):
            await self._task
        self._task = None
        try:
            await anyio.to_thread.run_sync(self._log.checkpoint)
        except Exception:
            logger.exception("final audit checkpoint failed")

    async def _run(self) -> None:
        while True:
            got = await self._batches.next(self._interval_s)
            if got is None:  # idle for a cadence interval: cover the tail
                if self._log.uncovered:
                    try:
                        await anyio.to_thread.run_sync(self._log.checkpoint)
                    except Exception:
                        logger.exception("periodic audit checkpoint failed")
                continue
            batch, stop = got
            if batch:
                await self._commit(batch)
            if stop:
                return

    async def _commit(self, batch: list[_Item]) -> None:
        records = [record for record, _future in batch]
        try:
            results = await anyio.to_thread.run_sync(self._log.append_each, records)
        except Exception as exc:
            if len(batch) > 1 and may_be_one_record(exc):
                # The database refused the batch's data (a value one record carries):
                # find that record by committing each alone.
                logger.warning(
                    "audit batch of %d records refused (%s); committing them one by one",
                    len(batch), type(exc).__name__,
                )  # fmt: skip
                for item in batch:
                    await self._commit([item])
                return
            logger.error("audit batch of %d records failed: %s", len(batch), type(exc).__name__)
            for _record, future in batch:
                settle(future, exc)
            return
        for (_record, future), result in zip(batch, results, strict=True):
            if isinstance(result, RecordRejected):
                logger.warning("audit record refused: %s", result)
            assert result is not None  # (None only where skip_recorded asks for it)
            settle(future, result)


def may_be_one_record(exc: Exception) -> bool:
    """Whether ``exc`` may come from one record's values (then committing records one by
    one isolates it), rather than from the database being unreachable or locked (then
    every record fails alike, and retrying each would only multiply the wait)."""
    if isinstance(exc, OperationalError | InterfaceError | DisconnectionError | OSError):
        return False
    return isinstance(exc, StatementError | ValueError | TypeError | UnicodeError)
