"""Where the SIEM forwarder stands, kept in the database (table ``audit_forward_cursor``).

One row per destination (``host:port:format``): pointing ``audit.forward`` at another
SIEM, or asking the same one for another format, starts that destination from record
0 instead of skipping what it never received. Every gateway replica, on any host,
reads the row for the lag metrics (:mod:`appliance.audit.forward_status`); the
forwarder needs no volume.

The row also carries a lease (``holder``, ``held_until``): a forwarder claims it before
it sends and renews it as it goes; a second forwarder for the same destination is
refused until the first one releases it (on exit) or its lease runs out (a crash).
The cursor moves by one ``UPDATE`` after the receiver confirmed a batch, and only while
the lease is held and the row still holds the index this forwarder read.

Before the table existed the position lived in a JSON file (``audit.forward.cursor_file``,
default ``<data_dir>/audit_forward_cursor.json``). When the table has no row at all and
that file exists, :meth:`CursorStore.claim` takes its position once and leaves the file
as it is, so an upgrade neither repeats nor skips records.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from appliance.audit.forward_transport import DEFAULT_PORTS, ForwardError
from appliance.config import Settings
from appliance.db.tables import audit_forward_cursor
from appliance.errors import ConfigurationError

__all__ = [
    "Claim",
    "Cursor",
    "CursorStore",
    "cursor_key",
    "holder_name",
    "legacy_cursor_path",
    "load_cursor_file",
]

_T = audit_forward_cursor


@dataclass(frozen=True)
class Cursor:
    """Where forwarding stands: the next index to send, and the leaf hash of the record
    before it (to notice a log that changed under the forwarder)."""

    origin: str
    next_index: int = 0
    last_leaf_hash: bytes | None = None
    delivered_at: datetime | None = None  # when the SIEM last took a batch (lag metric)


@dataclass(frozen=True)
class Claim:
    """A held cursor; ``imported_from`` names the old cursor file it was taken from."""

    cursor: Cursor
    imported_from: Path | None = None


def cursor_key(settings: Settings) -> str:
    """The row ``audit.forward`` uses: ``host:port:format`` (port as resolved)."""
    forward = settings.audit.forward
    port = forward.port or DEFAULT_PORTS[forward.transport]
    return f"{forward.host}:{port}:{forward.format}"


def legacy_cursor_path(settings: Settings) -> Path:
    """The cursor file of earlier versions, read once by :meth:`CursorStore.claim`."""
    return settings.audit.forward.cursor_file or settings.data_dir / "audit_forward_cursor.json"


def holder_name() -> str:
    """This process, as a lease holder: host, pid and a random tag."""
    return f"{socket.gethostname()[:120]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _utc(value: datetime | None) -> datetime | None:
    # SQLite drops the zone (only UTC is stored); PostgreSQL answers in the session's.
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _parse_time(value: object) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def load_cursor_file(path: Path, origin: str) -> Cursor | None:
    """An old cursor file's position; None when there is none. ConfigurationError when
    it cannot be read or belongs to another log."""
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        leaf = data.get("last_leaf_hash")
        cursor = Cursor(
            origin=str(data["origin"]),
            next_index=int(data["next_index"]),
            last_leaf_hash=bytes.fromhex(leaf) if leaf else None,
            delivered_at=_parse_time(data.get("delivered_at")),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigurationError(f"cursor file {path} is unreadable: {exc}") from exc
    if cursor.origin != origin:
        raise ConfigurationError(
            f"cursor file {path} belongs to the log {cursor.origin!r}, not {origin!r}; "
            "move it away (audit.forward.cursor_file is only read to import a position)"
        )
    return cursor


def _as_cursor(origin: str, row: Any) -> Cursor:
    return Cursor(origin, int(row.next_index), row.last_leaf_hash, _utc(row.delivered_at))


class CursorStore:
    """The ``audit_forward_cursor`` row of one destination (blocking I/O)."""

    def __init__(self, engine: Engine, key: str, origin: str):
        self.engine = engine
        self.key = key
        self.origin = origin

    def load(self) -> Cursor | None:
        """The saved position; None when this destination never had one."""
        with self.engine.connect() as connection:
            row = connection.execute(select(_T).where(_T.c.destination == self.key)).first()
        return None if row is None else _as_cursor(self.origin, row)

    def claim(
        self, holder: str, now: datetime, lease_s: float, legacy_file: Path | None = None
    ) -> Claim:
        """Take (or renew) the lease and return the saved position. A destination seen
        for the first time starts at 0, or, while the table is empty, at the position of
        ``legacy_file``. ForwardError while another forwarder holds a live lease."""
        now = now.astimezone(UTC)  # SQLite compares the stored text: one zone only
        until = now + timedelta(seconds=lease_s)
        try:
            with self.engine.begin() as connection:
                row = self._row(connection)
                if row is None:
                    return self._create(connection, holder, now, until, legacy_file)
                taken = connection.execute(
                    update(_T)
                    .where(
                        _T.c.destination == self.key,
                        or_(_T.c.holder.is_(None), _T.c.holder == holder, _T.c.held_until < now),
                    )
                    .values(holder=holder, held_until=until, updated_at=now)
                )
                row = self._row(connection)
        except IntegrityError as exc:  # two forwarders created the row at once
            raise ForwardError(f"another forwarder just claimed the cursor of {self.key}") from exc
        except SQLAlchemyError as exc:
            raise ForwardError(f"cannot claim the cursor: {type(exc).__name__}") from exc
        if taken.rowcount != 1 or row is None:
            other = row.holder if row is not None else "?"
            held = _utc(row.held_until) if row is not None else None
            raise ForwardError(
                f"another forwarder ({other}) holds the cursor of {self.key} until "
                f"{held.isoformat() if held else '?'}; one forwarder runs per destination"
            )
        return Claim(_as_cursor(self.origin, row))

    def _row(self, connection: Connection) -> Any:
        return connection.execute(select(_T).where(_T.c.destination == self.key)).first()

    def _create(
        self,
        connection: Connection,
        holder: str,
        now: datetime,
        until: datetime,
        legacy_file: Path | None,
    ) -> Claim:
        start, imported = Cursor(self.origin), None
        if legacy_file is not None:
            rows = connection.execute(select(func.count()).select_from(_T)).scalar_one()
            old = load_cursor_file(legacy_file, self.origin) if rows == 0 else None
            if old is not None:
                start, imported = old, legacy_file
        connection.execute(
            insert(_T).values(
                destination=self.key,
                next_index=start.next_index,
                last_leaf_hash=start.last_leaf_hash,
                delivered_at=start.delivered_at,
                updated_at=now,
                holder=holder,
                held_until=until,
            )
        )
        return Claim(start, imported)

    def advance(
        self, holder: str, expected: int, moved: Cursor, now: datetime, lease_s: float
    ) -> None:
        """Move the cursor to ``moved`` (and renew the lease), only if this holder still
        holds it at ``expected``; ForwardError otherwise (the batch will be sent again)."""
        now = now.astimezone(UTC)
        try:
            with self.engine.begin() as connection:
                done = connection.execute(
                    update(_T)
                    .where(
                        _T.c.destination == self.key,
                        _T.c.holder == holder,
                        _T.c.next_index == expected,
                    )
                    .values(
                        next_index=moved.next_index,
                        last_leaf_hash=moved.last_leaf_hash,
                        delivered_at=moved.delivered_at,
                        updated_at=now,
                        held_until=now + timedelta(seconds=lease_s),
                    )
                )
        except SQLAlchemyError as exc:
            raise ForwardError(
                f"cannot save the cursor ({type(exc).__name__}); "
                f"records {expected}-{moved.next_index - 1} will be sent again"
            ) from exc
        if done.rowcount != 1:
            raise ForwardError(
                f"the cursor of {self.key} was taken over by another forwarder; "
                f"records {expected}-{moved.next_index - 1} may arrive twice"
            )

    def release(self, holder: str) -> None:
        """Give the lease up (on exit), so the next forwarder need not wait for it."""
        try:
            with self.engine.begin() as connection:
                connection.execute(
                    update(_T)
                    .where(_T.c.destination == self.key, _T.c.holder == holder)
                    .values(holder=None, held_until=None)
                )
        except SQLAlchemyError:
            pass  # the lease runs out by itself
