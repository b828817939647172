"""The interface the gateway writes audit records through."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from appliance.audit.log import Appended, AuditLog
from appliance.audit.records import AuditRecord

__all__ = ["AuditSink", "LogSink", "MemoryAuditSink"]


@runtime_checkable
class AuditSink(Protocol):
    async def append(self, record: AuditRecord) -> Appended | None:
        """Return only once the record is durable; raise if it cannot be made so. A
        Merkle log says where the record went in (what a receipt names); a sink that is
        no log (tests) answers None."""
        ...


@runtime_checkable
class LogSink(AuditSink, Protocol):
    """A sink in front of a sealed Merkle log (the group-commit writer, the spool)."""

    @property
    def log(self) -> AuditLog: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def checkpoint(self) -> None: ...


class MemoryAuditSink:
    """Keeps records in a list (tests); can be told to fail, to test fail-closed paths."""

    def __init__(self) -> None:
        self.records: list[AuditRecord] = []
        self.fail = False

    async def append(self, record: AuditRecord) -> Appended | None:
        if self.fail:
            raise OSError("audit sink unavailable")
        self.records.append(record)
        return None
