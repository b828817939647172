"""Sending syslog messages to a SIEM's receiver over UDP, TCP or TLS, and knowing when
the receiver has read them (the transport half of ``appliance audit forward``).

Syslog over TCP or TLS has no acknowledgement of its own, so "read by the receiver" is
the most a sender can know: :func:`deliver` sends one batch on one connection, closes
our side (TLS: close_notify first) and waits for the receiver to close its own and for
its host to acknowledge every octet. A receiver closes after it has read everything
before our close, while one that dies with octets unread resets the connection and one
that refuses our TLS client certificate sends an alert: both are errors. UDP confirms
nothing (one datagram per record, RFC 5426).

Framing: octet counting (RFC 6587 §3.4.1, RFC 5425 §4.3).
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import ssl
import struct
import termios
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal, TypeVar

from appliance.audit.siem_syslog import octet_counted
from appliance.errors import ApplianceError, ConfigurationError

__all__ = ["DEFAULT_PORTS", "Destination", "ForwardError", "Transport", "deliver"]

Transport = Literal["tls", "tcp", "udp"]
_T = TypeVar("_T")
_DROPPED = {errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN, errno.ECONNABORTED}
DEFAULT_PORTS = {"tls": 6514, "tcp": 514, "udp": 514}  # RFC 5425 §4.1, RFC 5426 §3.3


class ForwardError(ApplianceError):
    """The SIEM did not take a batch (or the store could not be read); the cursor did
    not move, so the next attempt sends the same records again."""


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
