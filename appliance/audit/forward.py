"""Forwarding audit metadata to a SOC's SIEM (``appliance audit forward``).

The forwarder is a reader of the store, in its own process: it never sits on a
request's path, so a SIEM outage can neither slow nor fail a user's request. It
follows the log from a durable cursor and sends each record, in index order, as one
message (:mod:`appliance.audit.siem`) over UDP, TCP or TLS.

Delivery is at least once:

1. read the next batch from the cursor: indices must be dense, and each row's leaf,
   recomputed, must equal its stored leaf hash (else: stop, naming the record);
2. send the batch on one connection, close our side (TLS: close_notify first) and
   wait for the receiver to close its own and for its host to acknowledge every
   octet: a receiver closes after it has read everything before our close, while one
   that dies with octets unread resets the connection and one that refuses our TLS
   client certificate sends an alert, both errors;
3. only then replace the cursor file (write, fsync, rename) with the next index and
   the leaf hash of the last record sent.

A crash between 2 and 3 resends that batch; the SIEM drops repeats by log index.
Syslog over TCP or TLS has no acknowledgement of its own, so "read by the receiver"
is the most a sender can know. UDP confirms nothing (one datagram per record).
"""

from __future__ import annotations

import errno
import fcntl
import hmac
import json
import os
import socket
import ssl
import struct
import termios
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Literal, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from appliance import __version__
from appliance.audit.merkle import leaf_hash
from appliance.audit.records import leaf_bytes
from appliance.audit.siem import FACILITIES, SiemOptions, octet_counted, render
from appliance.audit.store import SqlAuditStore, StoredEntry
from appliance.config import Settings
from appliance.errors import (
    ApplianceError,
    ConfigurationError,
    InvalidRequest,
    VerificationError,
)

__all__ = [
    "Batch",
    "Cursor",
    "CursorFile",
    "Destination",
    "ForwardError",
    "Forwarder",
    "deliver",
    "forwarder_for",
]

Transport = Literal["tls", "tcp", "udp"]
_T = TypeVar("_T")
_DROPPED = {errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN, errno.ECONNABORTED}
DEFAULT_PORTS = {"tls": 6514, "tcp": 514, "udp": 514}  # RFC 5425 §4.1, RFC 5426 §3.3
_CURSOR_VERSION = 1


class ForwardError(ApplianceError):
    """The SIEM did not take a batch (or the store could not be read); the cursor did
    not move, so the next attempt sends the same records again."""


@dataclass(frozen=True)
class Cursor:
    """Where forwarding stands: the next index to send, and the leaf hash of the record
    before it (to notice a log that changed under the forwarder)."""

    origin: str
    next_index: int = 0
    last_leaf_hash: bytes | None = None


class CursorFile:
    """The cursor as a small JSON file, replaced atomically."""

    def __init__(self, path: Path):
        self.path = path

    def load(self, origin: str) -> Cursor:
        if not self.path.exists():
            return Cursor(origin)
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            cursor = Cursor(
                origin=str(data["origin"]),
                next_index=int(data["next_index"]),
                last_leaf_hash=bytes.fromhex(data["last_leaf_hash"])
                if data.get("last_leaf_hash")
                else None,
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigurationError(f"cursor file {self.path} is unreadable: {exc}") from exc
        if cursor.origin != origin:
            raise ConfigurationError(
                f"cursor file {self.path} belongs to the log {cursor.origin!r}, not "
                f"{origin!r}; point audit.forward.cursor_file elsewhere"
            )
        return cursor

    def save(self, cursor: Cursor) -> None:
        data = {
            "version": _CURSOR_VERSION,
            "origin": cursor.origin,
            "next_index": cursor.next_index,
            "last_leaf_hash": cursor.last_leaf_hash.hex() if cursor.last_leaf_hash else None,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        with temporary.open("w", encoding="utf-8") as handle:
            handle.write(json.dumps(data, indent=2) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a crash
        finally:
            os.close(directory)


@dataclass(frozen=True)
class Destination:
    transport: Transport
    host: str
    port: int
    timeout_s: float = 10.0
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name: str | None = None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}://{host}:{self.port}"

    def tls_context(self) -> ssl.SSLContext:
        """Verifies the receiver's certificate and name (against ``ca_file`` or the
        system's CAs); TLS 1.2 at least (RFC 5425 §5.1, RFC 9325)."""
        try:
            context = ssl.create_default_context(cafile=self.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(f"audit.forward.ca_file {self.ca_file}: {exc}") from exc
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert_file is not None:
            try:
                context.load_cert_chain(self.cert_file, self.key_file)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigurationError(
                    f"audit.forward.cert_file {self.cert_file} / key_file {self.key_file}: {exc}"
                ) from exc
        return context


@contextmanager
def _mapped_errors(destination: Destination) -> Iterator[None]:
    """The one place that turns socket and TLS failures into a :class:`ForwardError`."""
    try:
        yield
    except ForwardError:
        raise
    except ssl.SSLCertVerificationError as exc:
        reason = exc.verify_message or exc.reason or str(exc)
        raise ForwardError(f"{destination}: the receiver's certificate: {reason}") from exc
    except (ConnectionResetError, BrokenPipeError, ssl.SSLEOFError) as exc:
        hint = ""
        if destination.transport == "tls" and destination.cert_file is None:
            hint = " (does it want a client certificate? audit.forward.cert_file)"
        raise ForwardError(
            f"{destination}: the receiver dropped the connection before it confirmed the "
            f"batch{hint}"
        ) from exc
    except ssl.SSLError as exc:
        raise ForwardError(f"{destination}: TLS failed: {exc.reason or exc}") from exc
    except socket.gaierror as exc:
        raise ForwardError(f"{destination}: cannot resolve {destination.host}") from exc
    except ConnectionRefusedError as exc:
        raise ForwardError(f"{destination}: connection refused (is the SIEM up?)") from exc
    except TimeoutError as exc:
        raise ForwardError(f"{destination}: no answer within {destination.timeout_s:g} s") from exc
    except OSError as exc:
        if exc.errno in _DROPPED:
            raise ForwardError(
                f"{destination}: the receiver dropped the connection before it confirmed the batch"
            ) from exc
        raise ForwardError(f"{destination}: {exc.strerror or exc}") from exc


@contextmanager
def _confirming(destination: Destination) -> Iterator[None]:
    try:
        yield
    except TimeoutError as exc:
        raise ForwardError(
            f"{destination}: the receiver did not confirm the batch (close the connection) "
            f"within {destination.timeout_s:g} s"
        ) from exc


def _unacknowledged(sock: socket.socket) -> int:
    """Octets we sent (our FIN included) that the receiver's host has not acknowledged
    (Linux SIOCOUTQ); 0 where the platform cannot tell."""
    request = getattr(termios, "TIOCOUTQ", None)
    if request is None:
        return 0
    try:
        (count,) = struct.unpack("i", fcntl.ioctl(sock.fileno(), request, b"\0" * 4))
    except OSError:
        return 0
    return int(count)


def _acknowledged(sock: socket.socket, deadline: float) -> None:
    """After the receiver's EOF: wait until its host acknowledged all we sent. A receiver
    that closed before our octets reached it resets them instead (and one that closes
    with octets unread resets the connection rather than sending EOF), so EOF plus a
    full acknowledgement means it read the whole batch."""
    while _unacknowledged(sock):
        error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if error:
            raise OSError(error, os.strerror(error))
        if time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(0.005)


def _tls_exchange(sock: socket.socket, destination: Destination, data: bytes) -> None:
    """TLS over ``sock`` driven by hand (memory BIOs), so that after our close_notify
    (RFC 5425 §4.4) an alert from the receiver, such as a refused client certificate,
    surfaces as an error instead of being skipped by a plain shutdown."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = destination.tls_context().wrap_bio(
        incoming, outgoing, server_hostname=destination.server_name or destination.host
    )

    def flush() -> None:
        if pending := outgoing.read():
            sock.sendall(pending)

    def pump(step: Callable[[], _T]) -> _T:
        while True:
            try:
                result = step()
            except ssl.SSLWantReadError:
                flush()
                chunk = sock.recv(65536)
                incoming.write(chunk) if chunk else incoming.write_eof()
                continue
            flush()
            return result

    pump(tls.do_handshake)
    view = memoryview(data)
    while view:
        view = view[pump(partial(tls.write, view[:65536])) :]
    try:
        tls.unwrap()  # queues our close_notify
    except ssl.SSLWantReadError:
        pass
    flush()
    sock.shutdown(socket.SHUT_WR)
    with _confirming(destination):
        try:
            while True:
                pump(lambda: tls.read(65536))  # a syslog receiver sends nothing: ignored
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            pass  # its close_notify, or EOF without one: either way it closed after us


def deliver(destination: Destination, messages: Sequence[bytes]) -> None:
    """Send one batch of RFC 5424 messages; return once the receiver has read them
    (TCP, TLS) or they left this host (UDP). Raises :class:`ForwardError`."""
    with _mapped_errors(destination):
        if destination.transport == "udp":
            family, kind, proto, _, address = socket.getaddrinfo(
                destination.host, destination.port, type=socket.SOCK_DGRAM
            )[0]
            with socket.socket(family, kind, proto) as udp:
                udp.settimeout(destination.timeout_s)
                udp.connect(address)
                for message in messages:
                    udp.send(message)  # RFC 5426 §3.1: one message per datagram
            return
        frames = b"".join(octet_counted(m) for m in messages)
        address = (destination.host, destination.port)
        with socket.create_connection(address, timeout=destination.timeout_s) as sock:
            if destination.transport == "tls":
                _tls_exchange(sock, destination, frames)
            else:
                sock.sendall(frames)
                sock.shutdown(socket.SHUT_WR)
                with _confirming(destination):
                    while sock.recv(4096):
                        pass  # until its EOF; a syslog receiver sends nothing
            with _confirming(destination):
                _acknowledged(sock, time.monotonic() + destination.timeout_s)


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
    """Follows ``store`` from ``cursor_file`` and delivers to ``destination``."""

    def __init__(
        self,
        store: SqlAuditStore,
        cursor_file: CursorFile,
        destination: Destination,
        *,
        fmt: str,
        options: SiemOptions,
        batch_records: int = 500,
        send: Callable[[Destination, Sequence[bytes]], None] = deliver,
    ):
        self.store = store
        self.cursor_file = cursor_file
        self.destination = destination
        self.fmt = fmt
        self.options = options
        self.batch_records = batch_records
        self._send = send
        self._cursor: Cursor | None = None

    def position(self, start: int | None = None) -> Cursor:
        """The cursor (or ``start``, to resend from there), checked against the store:
        the record before it must still be the one forwarded."""
        if self._cursor is not None and start is None:
            return self._cursor
        cursor = self.cursor_file.load(self.options.origin)
        if start is not None:
            size = self._size()
            if start > size:
                raise InvalidRequest(f"cannot start at record {start}: the log holds {size}")
            cursor = Cursor(self.options.origin, start, None)
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
            self._send(self.destination, messages)
            last, last_hash = good[-1][0].entry.index, good[-1][1]
            moved = Cursor(self.options.origin, last + 1, last_hash)
            try:
                self.cursor_file.save(moved)
            except OSError as exc:
                raise ForwardError(
                    f"cannot save the cursor {self.cursor_file.path} ({exc.strerror or exc}); "
                    f"records {cursor.next_index}-{last} will be sent again"
                ) from exc
            self._cursor = moved
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
    options = SiemOptions(
        origin=settings.audit.origin,
        hostname=forward.hostname or socket.gethostname(),
        app_name=forward.app_name,
        facility=FACILITIES[forward.facility],
        sd_id=forward.sd_id,
        product_version=__version__,
    )
    cursor = forward.cursor_file or settings.data_dir / "audit_forward_cursor.json"
    return Forwarder(
        store, CursorFile(cursor), destination, fmt=forward.format, options=options,
        batch_records=forward.batch_records,
    )  # fmt: skip
