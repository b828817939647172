"""Group commit's queue: callers submit one item each and wait; a single consumer takes
them in batches (every item queued when a batch starts, up to ``max_records``, waiting
at most ``max_wait_ms`` for more) and settles each caller's future."""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

__all__ = ["Batches", "settle"]

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


class Batches(Generic[ItemT, ResultT]):
    def __init__(self, max_records: int, max_wait_ms: float) -> None:
        self._max_records = max_records
        self._max_wait_s = max_wait_ms / 1000
        self._queue: asyncio.Queue[tuple[ItemT, asyncio.Future[ResultT]] | None] = asyncio.Queue()

    async def submit(self, item: ItemT) -> ResultT:
        """Queue ``item``; its result once the consumer settles it."""
        future: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((item, future))
        # Shielded: a cancelled caller (client gone) must not cancel the commit others
        # share; the item is committed either way.
        return await asyncio.shield(future)

    def close(self) -> None:
        """The consumer's next batch is its last (``stop`` is true)."""
        self._queue.put_nowait(None)

    async def next(
        self, idle_s: float
    ) -> tuple[list[tuple[ItemT, asyncio.Future[ResultT]]], bool] | None:
        """The next batch and whether the queue was closed; None after ``idle_s``
        without any item."""
        loop = asyncio.get_running_loop()
        try:
            first = await asyncio.wait_for(self._queue.get(), idle_s)
        except TimeoutError:
            return None
        if first is None:
            return [], True
        batch = [first]
        deadline = loop.time() + self._max_wait_s
        while len(batch) < self._max_records:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False


def settle(future: asyncio.Future[ResultT], outcome: ResultT | BaseException) -> None:
    """Give a caller its result or error (once)."""
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
        # A caller that went away (shielded await) never reads it: mark it retrieved so
        # asyncio does not log it; awaiting still raises.
        future.exception()
        return
    future.set_result(outcome)
