"""Forwarding audit metadata to a SOC's SIEM (``appliance audit forward``).

The forwarder is a reader of the store, in its own process: it never sits on a
request's path, so a SIEM outage can neither slow nor fail a user's request. It
follows the log from a durable cursor (a row in the database,
:mod:`appliance.audit.forward_cursor`) and sends each record, in index order, as one
message (:mod:`appliance.audit.siem_syslog`) through
:mod:`appliance.audit.forward_transport` (UDP, TCP or TLS).

Delivery is at least once:

1. read the next batch from the cursor: indices must be dense, and each row's leaf,
   recomputed, must equal its stored leaf hash (else: stop, naming the record);
2. send the batch on one connection and wait until the receiver has read all of it
   (:func:`~appliance.audit.forward_transport.deliver`);
3. only then move the cursor (one ``UPDATE``, while this forwarder holds the cursor's
   lease) to the next index, the leaf hash of the last record sent and the time of
   the delivery.

A crash between 2 and 3 resends that batch; every message carries the log's origin and
the record's index (its dedupe key), so the SIEM drops repeats by it. One forwarder
runs per destination: a second one waits for the lease (see
:class:`~appliance.audit.forward_cursor.CursorStore`).
"""

from __future__ import annotations

import hmac
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from appliance import __version__
from appliance.audit.forward_cursor import (
    Cursor,
    CursorStore,
    cursor_key,
    holder_name,
    legacy_cursor_path,
)
from appliance.audit.forward_transport import DEFAULT_PORTS, Destination, ForwardError, deliver
from appliance.audit.merkle import leaf_hash
from appliance.audit.records import leaf_bytes
from appliance.audit.siem import SiemOptions
from appliance.audit.siem_rfc5424 import FACILITIES
from appliance.audit.siem_syslog import render
from appliance.audit.store import SqlAuditStore, StoredEntry
from appliance.config import Settings
from appliance.errors import ConfigurationError, InvalidRequest, VerificationError

__all__ = [
    "Batch",
    "Cursor",
    "CursorStore",
    "Destination",
    "ForwardError",
    "Forwarder",
    "deliver",
    "forwarder_for",
    "lease_seconds",
    "siem_options",
]


@dataclass(frozen=True)
class Batch:
    """Records ``first``..``last`` (inclusive) were delivered; ``behind`` remain."""

    first: int
    last: int
    behind: int

    @property
    def count(self) -> int:
        return self.last - self.first + 1


class Forwarder:
    """Follows ``store`` from its cursor row (``cursors``) and delivers to
    ``destination``, holding the cursor's lease for ``lease_s`` seconds at a time.
    ``legacy_file``: the cursor file of earlier versions, imported on first use."""

    def __init__(
        self,
        store: SqlAuditStore,
        cursors: CursorStore,
        destination: Destination,
        *,
        fmt: str,
        options: SiemOptions,
        batch_records: int = 500,
        lease_s: float = 120.0,
        legacy_file: Path | None = None,
        send: Callable[[Destination, Sequence[bytes]], None] = deliver,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.store = store
        self.cursors = cursors
        self.legacy_file = legacy_file
        self.lease_s = lease_s
        self.holder = holder_name()
        self.imported_from: Path | None = None  # set when the old file was imported
        self.imported_index = 0  # the position taken from it
        self.destination = destination
        self.fmt = fmt
        self.options = options
        self.batch_records = batch_records
        self._send = send
        self._now = now
        self._cursor: Cursor | None = None
        self._stored_next = 0  # next_index as the row holds it
        self._renew_at: datetime | None = None

    def _claim(self) -> Cursor:
        """Take or renew the lease (ForwardError while another forwarder holds it)."""
        now = self._now()
        claim = self.cursors.claim(self.holder, now, self.lease_s, self.legacy_file)
        if claim.imported_from is not None:
            self.imported_from, self.imported_index = claim.imported_from, claim.cursor.next_index
        self._renew_at = now + timedelta(seconds=self.lease_s / 3)
        return claim.cursor

    def release(self) -> None:
        """Give the lease up, so a successor need not wait for it to run out."""
        if self._renew_at is not None:
            self.cursors.release(self.holder)
            self._renew_at = None

    @property
    def next_index(self) -> int:
        """The next index to send, as last read or moved (no I/O)."""
        return self._cursor.next_index if self._cursor is not None else self._stored_next

    def position(self, start: int | None = None) -> Cursor:
        """The cursor (or ``start``, to resend from there), checked against the store:
        the record before it must still be the one forwarded."""
        if self._cursor is not None and start is None:
            if self._renew_at is None or self._now() >= self._renew_at:
                self._claim()
            return self._cursor
        cursor = self._claim()
        self._stored_next = cursor.next_index
        if start is not None:
            size = self._size()
            if start > size:
                raise InvalidRequest(f"cannot start at record {start}: the log holds {size}")
            cursor = Cursor(self.options.origin, start, None, cursor.delivered_at)
        if cursor.next_index > 0:
            previous = self._read(cursor.next_index - 1, 1)
            index = cursor.next_index - 1
            if not previous or previous[0].entry.index != index:
                raise VerificationError(
                    f"record {index} was forwarded but is no longer in the audit log "
                    "(rolled back or deleted?); run `appliance audit verify`"
                )
            stored = previous[0].stored_leaf_hash
            if cursor.last_leaf_hash is None:
                cursor = replace(cursor, last_leaf_hash=stored)
            elif not hmac.compare_digest(stored, cursor.last_leaf_hash):
                raise VerificationError(
                    f"record {index} differs from the one forwarded (leaf hash "
                    f"{stored.hex()}, forwarded {cursor.last_leaf_hash.hex()}); "
                    "run `appliance audit verify`"
                )
        self._cursor = cursor
        return cursor

    def _read(self, start: int, limit: int) -> list[StoredEntry]:
        try:
            return next(self.store.iter_pages(start, batch=limit), [])
        except SQLAlchemyError as exc:
            raise ForwardError(f"cannot read the audit log: {type(exc).__name__}") from exc

    def _behind(self, next_index: int) -> int:
        try:
            return max(0, self.store.size() - next_index)
        except SQLAlchemyError:
            return 0  # delivered all the same; the count is only for progress

    def _size(self) -> int:
        try:
            return self.store.size()
        except SQLAlchemyError as exc:
            raise ForwardError(f"cannot read the audit log: {type(exc).__name__}") from exc

    def forward_batch(self) -> Batch | None:
        """Deliver the next batch and move the cursor past it; None when caught up.

        A gap or a row whose leaf does not match its stored hash stops forwarding at
        that record (the records before it are delivered first) with a
        :class:`VerificationError`: a SIEM copy must not hide a hole in the log."""
        cursor = self.position()
        rows = self._read(cursor.next_index, self.batch_records)
        good: list[tuple[StoredEntry, bytes]] = []
        problem: VerificationError | None = None
        for stored in rows:
            expected = cursor.next_index + len(good)
            if stored.entry.index != expected:
                problem = VerificationError(
                    f"record {expected} is missing from the audit log (the next stored "
                    f"is {stored.entry.index}); forwarding stops there: run "
                    "`appliance audit verify`"
                )
                break
            computed = leaf_hash(leaf_bytes(stored.entry))
            if not hmac.compare_digest(computed, stored.stored_leaf_hash):
                problem = VerificationError(
                    f"record {expected} ({stored.entry.record.record_id}) does not match "
                    "its leaf hash; forwarding stops there: run `appliance audit verify`"
                )
                break
            good.append((stored, computed))
        batch = None
        if good:
            messages = [render(self.fmt, s.entry, h, self.options) for s, h in good]
            # Still ours, and where we left it? Then no other forwarder sends these.
            if self._claim().next_index != self._stored_next:
                self._cursor = None  # read it again before the next batch
                raise ForwardError(
                    "another forwarder moved the cursor; reading it again before sending"
                )
            self._send(self.destination, messages)
            last, last_hash = good[-1][0].entry.index, good[-1][1]
            now = self._now()
            moved = Cursor(self.options.origin, last + 1, last_hash, now)
            try:
                self.cursors.advance(self.holder, self._stored_next, moved, now, self.lease_s)
            except ForwardError:
                self._cursor = None  # read the row again before the next batch
                raise
            self._cursor, self._stored_next = moved, moved.next_index
            self._renew_at = now + timedelta(seconds=self.lease_s / 3)
            batch = Batch(cursor.next_index, last, self._behind(last + 1))
        if problem is not None:
            raise problem
        return batch

    def run_once(self, on_batch: Callable[[Batch], None] = lambda _: None) -> int:
        """Deliver everything the log holds now; the number of records sent."""
        sent = 0
        while (batch := self.forward_batch()) is not None:
            sent += batch.count
            on_batch(batch)
            if batch.behind == 0:
                break
        return sent

    def follow(
        self,
        *,
        interval_s: float,
        max_backoff_s: float,
        stop: threading.Event,
        on_batch: Callable[[Batch], None] = lambda _: None,
        on_retry: Callable[[ForwardError, float], None] = lambda _e, _d: None,
    ) -> int:
        """Deliver new records as they come until ``stop`` is set. A SIEM or store
        outage is retried with exponential backoff (``interval_s`` doubling up to
        ``max_backoff_s``) from the same cursor; a :class:`VerificationError` ends it."""
        sent = 0
        delay = interval_s
        while not stop.is_set():
            try:
                batch = self.forward_batch()
            except ForwardError as exc:
                on_retry(exc, delay)
                stop.wait(delay)
                delay = min(delay * 2, max_backoff_s)
                continue
            delay = interval_s
            if batch is None:
                stop.wait(interval_s)
                continue
            sent += batch.count
            on_batch(batch)
        return sent


def lease_seconds(settings: Settings) -> float:
    """How long a forwarder's claim on its cursor lasts without renewal: longer than
    the longest pause between its batches (a backoff wait plus a batch's timeouts), so
    only a forwarder that is gone loses it."""
    forward = settings.audit.forward
    return max(
        60.0, 2 * forward.max_backoff_s + 4 * forward.timeout_s + 2 * forward.poll_interval_s
    )


def siem_options(settings: Settings) -> SiemOptions:
    """What ``audit.forward`` adds to every message (also used by ``audit export``)."""
    forward = settings.audit.forward
    return SiemOptions(
        origin=settings.audit.origin,
        hostname=forward.hostname or socket.gethostname(),
        app_name=forward.app_name,
        facility=FACILITIES[forward.facility],
        sd_id=forward.sd_id,
        product_version=__version__,
    )


def forwarder_for(settings: Settings, store: SqlAuditStore) -> Forwarder:
    """The forwarder ``audit.forward`` describes; ConfigurationError while it is off."""
    forward = settings.audit.forward
    if not forward.host:
        raise ConfigurationError(
            "audit.forward.host is not set: name the SIEM's syslog receiver in "
            "appliance.yaml (audit.forward) or APPLIANCE_AUDIT__FORWARD__HOST"
        )
    destination = Destination(
        transport=forward.transport,
        host=forward.host,
        port=forward.port or DEFAULT_PORTS[forward.transport],
        timeout_s=forward.timeout_s,
        ca_file=forward.ca_file,
        cert_file=forward.cert_file,
        key_file=forward.key_file,
        server_name=forward.server_name,
    )
    options = siem_options(settings)
    cursors = CursorStore(store.engine, cursor_key(settings), settings.audit.origin)
    return Forwarder(
        store, cursors, destination, fmt=forward.format, options=options,
        batch_records=forward.batch_records, lease_s=lease_seconds(settings),
        legacy_file=legacy_cursor_path(settings),
    )  # fmt: skip
