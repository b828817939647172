"""``appliance audit forward`` against real local syslog receivers (TCP, TLS with the
appliance's own CA and a client certificate, UDP), fed by the real sealing writer on
SQLite and PostgreSQL: order, RFC 6587 octet-counting framing, no content in any byte
sent, resuming from the cursor without gaps, and SIEM outages that lose nothing."""

from __future__ import annotations

import datetime as dt
import json
import re
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine, select, text
from typer.testing import CliRunner

from appliance.audit.forward import Forwarder, ForwardError, forwarder_for
from appliance.audit.log import AuditLog
from appliance.audit.records import AuditEvent, Outcome
from appliance.audit.store import SqlAuditStore
from appliance.cli.main import app
from appliance.config import Settings
from appliance.db.tables import audit_forward_cursor
from appliance.errors import ConfigurationError, VerificationError
from appliance.pki import init_ca, issue
from tests.support.audit import ORIGIN, build_log, content_record, make_record
from tests.support.servers import free_port

CANARY = "CANARY-4b1d prompt: the merger with Initech closes on Friday"
FRAME = re.compile(rb"([1-9][0-9]*) ")


def write_records(log: AuditLog, start: int, count: int) -> None:
    """Requests with a canary prompt, their answers, and a refusal now and then."""
    records = []
    for i in range(start, start + count):
        prompt = {"messages": [{"role": "user", "content": f"{CANARY} #{i}"}]}
        if i % 5 == 4:
            refused = make_record(
                f"req-{i}", event=AuditEvent.DENIED, outcome=Outcome.DENIED, status_code=403,
                subject="apikey:mallory", username="mallory", model="secret-model",
                denial_reason="model_not_allowed", content=prompt,
            )  # fmt: skip
            records.append(refused)
        else:
            records.append(content_record(i, content=prompt, client_addr="10.0.0.9"))
    log.append_batch(records)


class Receiver:
    """A syslog receiver on loopback: TCP (RFC 6587 octet counting) or TLS (RFC 5425).
    ``reset_after`` frames it resets the connection instead of reading on (a SIEM
    that dies mid-batch)."""

    def __init__(self, tls: ssl.SSLContext | None = None, port: int = 0):
        self.tls = tls
        self.frames: list[bytes] = []
        self.raw: list[bytes] = []  # every byte received, per connection
        self.errors: list[str] = []
        self.reset_after: int | None = None
        self.server = socket.create_server(("127.0.0.1", port))
        self.port = self.server.getsockname()[1]
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        received = b""
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            while data := conn.recv(65536):
                received += data
                while (match := FRAME.match(received)) and len(received) >= match.end() + int(
                    match.group(1)
                ):
                    end = match.end() + int(match.group(1))
                    if self.reset_after is not None and len(self.frames) >= self.reset_after:
                        conn.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                        return
                    self.frames.append(received[match.end() : end])
                    self.raw.append(received[:end])
                    received = received[end:]
            if received:
                self.errors.append(f"partial frame at EOF: {received[:40]!r}")
        except (OSError, ssl.SSLError) as exc:
            self.errors.append(repr(exc))
        finally:
            conn.close()

    def close(self) -> None:
        self.server.close()


def indices(frames: list[bytes]) -> list[int]:
    return [int(re.search(rb' index="([0-9]+)"', f).group(1)) for f in frames]  # type: ignore[union-attr]


def configure(
    tmp_path: Path, database_url: str, port: int, **forward: Any
) -> tuple[Path, Settings]:
    settings = {
        "data_dir": str(tmp_path / "data"),
        "database": {"url": database_url},
        "audit": {
            "origin": ORIGIN,
            "forward": {"host": "127.0.0.1", "port": port, "transport": "tcp", "timeout_s": 5,
                        **forward},
        },
    }  # fmt: skip
    path = tmp_path / "appliance.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path, Settings(**settings)  # type: ignore[arg-type]


def forward_once(config: Path, *args: str) -> Any:
    return CliRunner().invoke(app, ["audit", "forward", "--once", "--config", str(config), *args])


def cursor_of(log: AuditLog, port: int | None = None) -> dict[str, Any] | None:
    """The forwarder's cursor row: the only one, or the one of the receiver on ``port``."""
    with log.store.engine.connect() as connection:
        rows = connection.execute(select(audit_forward_cursor)).mappings().all()
    if port is not None:
        rows = [r for r in rows if r["destination"].startswith(f"127.0.0.1:{port}:")]
    assert len(rows) <= 1, rows
    return dict(rows[0]) if rows else None


def next_of(log: AuditLog) -> int:
    row = cursor_of(log)
    return int(row["next_index"]) if row else 0


@pytest.fixture
def log(migrated_engine: Engine) -> AuditLog:
    return build_log(migrated_engine)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def test_tcp_in_order_no_content_and_resumes_without_gaps(
    log: AuditLog, database_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    write_records(log, 0, 7)
    config, _ = configure(tmp_path, database_url, receiver.port)
    result = forward_once(config)
    assert result.exit_code == 0, result.output
    assert "forwarded records 0-6 (7); 0 behind" in result.output
    assert indices(receiver.frames) == list(range(7))
    stored = {s.entry.index: s.stored_leaf_hash.hex() for s in log.store.iter_entries()}
    for frame, index in zip(receiver.frames, range(7), strict=True):
        assert f'leafHash="{stored[index]}"'.encode() in frame
        assert frame.startswith(b"<") and b" appliance - " in frame
    cursor = cursor_of(log)
    assert cursor is not None
    delivered_at = cursor.pop("delivered_at")
    if delivered_at.tzinfo is None:  # SQLite keeps UTC without the zone
        delivered_at = delivered_at.replace(tzinfo=dt.UTC)
    assert abs((dt.datetime.now(dt.UTC) - delivered_at).total_seconds()) < 60  # lag metric
    for moment in ("updated_at", "held_until"):
        cursor.pop(moment)
    assert cursor == {
        "destination": f"127.0.0.1:{receiver.port}:syslog", "next_index": 7,
        "last_leaf_hash": bytes.fromhex(stored[6]), "holder": None,  # released on exit
    }  # fmt: skip
    assert not (tmp_path / "data" / "audit_forward_cursor.json").exists()  # no file
    denied = [f for f in receiver.frames if b"request.denied" in f]
    assert denied and all(f.startswith(b"<84>1 ") for f in denied)  # authpriv.warning
    assert all(f.startswith(b"<86>1 ") for f in receiver.frames if f not in denied)  # .info

    # A restart: a new process, the same cursor. Nothing again, then only what is new.
    assert "done: 0 record(s) forwarded; next is 7" in forward_once(config).output
    write_records(log, 7, 5)
    result = forward_once(config)
    assert result.exit_code == 0, result.output
    assert indices(receiver.frames) == list(range(12))  # no gap, no repeat
    everything = b"".join(receiver.raw)
    assert CANARY.encode() not in everything and b"CANARY" not in everything
    assert receiver.errors == []


def test_octet_counting_frames_are_exact(
    log: AuditLog, database_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    """The bytes on the wire, parsed without the receiver's help: MSG-LEN SP MSG, where
    MSG-LEN counts octets (a non-ASCII username makes octets and characters differ)."""
    log.append_batch([content_record(i, subject="oidc:j\u00fcrgen") for i in range(3)])
    config, _ = configure(tmp_path, database_url, receiver.port, format="cef")
    assert forward_once(config).exit_code == 0
    wire = b"".join(receiver.raw)
    position, messages = 0, []
    while position < len(wire):
        match = FRAME.match(wire, position)
        assert match is not None, wire[position : position + 20]
        end = match.end() + int(match.group(1))
        messages.append(wire[match.end() : end])
        position = end
    assert position == len(wire) and len(messages) == 3
    assert all(b"suser=j\xc3\xbcrgen" in m and b"CEF:0|sovereign-appliance|" in m for m in messages)


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    directory = tmp_path / "pki"
    now = dt.datetime.now(dt.UTC)
    init_ca(directory, gateway_hosts=["127.0.0.1"], engines={}, days=2, now=now)
    issue(directory, "siem", ["127.0.0.1", "localhost"], days=2, now=now)
    issue(directory, "forwarder", ["forwarder"], days=2, now=now)
    return directory


def tls_receiver(pki: Path, *, require_client: bool) -> Receiver:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki / "siem.crt", pki / "siem.key")
    if require_client:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(pki / "ca.crt")
    return Receiver(tls=context)


@pytest.mark.parametrize("fmt", ["cef", "ocsf"])
def test_tls_with_client_certificate(
    log: AuditLog, database_url: str, tmp_path: Path, pki: Path, fmt: str
) -> None:
    server = tls_receiver(pki, require_client=True)
    try:
        write_records(log, 0, 5)
        config, _ = configure(
            tmp_path, database_url, server.port, transport="tls", format=fmt,
            ca_file=str(pki / "ca.crt"), cert_file=str(pki / "forwarder.crt"),
            key_file=str(pki / "forwarder.key"),
        )  # fmt: skip
        result = forward_once(config)
        assert result.exit_code == 0, result.output
        assert f"to tls://127.0.0.1:{server.port} as {fmt}" in result.output
        assert len(server.frames) == 5 and server.errors == []
        assert b"CANARY" not in b"".join(server.raw)
        payloads = [f.split(b" ", 7)[7] for f in server.frames]  # after SD (NILVALUE)
        assert all(f.split(b" ")[6] == b"-" for f in server.frames)
        if fmt == "cef":
            assert [re.search(rb"cn1=([0-9]+) ", p).group(1) for p in payloads] == [  # type: ignore[union-attr]
                b"0", b"1", b"2", b"3", b"4",
            ]  # fmt: skip
            assert b"|request.denied|Request denied|5|" in payloads[4]
        else:
            events = [json.loads(p) for p in payloads]
            assert [e["metadata"]["sequence"] for e in events] == [0, 1, 2, 3, 4]
            assert {e["class_uid"] for e in events} == {6003}
            assert events[4]["status_id"] == 2 and events[4]["severity_id"] == 3
    finally:
        server.close()


def test_untrusted_receiver_is_refused(
    log: AuditLog, database_url: str, tmp_path: Path, pki: Path
) -> None:
    server = tls_receiver(pki, require_client=False)
    try:
        write_records(log, 0, 2)
        # No ca_file: the system's CAs do not know the appliance's own CA.
        config, _ = configure(tmp_path, database_url, server.port, transport="tls")
        result = forward_once(config)
        assert result.exit_code == 1
        assert isinstance(result.exception, ForwardError)
        assert "certificate" in result.exception.message
        assert server.frames == [] and next_of(log) == 0
    finally:
        server.close()


def test_receiver_that_wants_a_client_certificate(
    log: AuditLog, database_url: str, tmp_path: Path, pki: Path
) -> None:
    server = tls_receiver(pki, require_client=True)
    try:
        write_records(log, 0, 2)
        config, _ = configure(
            tmp_path, database_url, server.port, transport="tls", ca_file=str(pki / "ca.crt")
        )
        result = forward_once(config)
        assert result.exit_code == 1 and isinstance(result.exception, ForwardError)
        message = result.exception.message
        # TLS 1.3 sends the server's refusal after the handshake: depending on timing
        # the client reads the alert (names the certificate) or only the closed socket.
        lowered = message.lower()
        assert "certificate" in lowered or "before it confirmed" in lowered, message
        assert server.frames == [] and next_of(log) == 0
    finally:
        server.close()


def test_unreachable_siem_exits_non_zero_and_keeps_the_cursor(
    log: AuditLog, database_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    write_records(log, 0, 3)
    config, _ = configure(tmp_path, database_url, receiver.port)
    assert forward_once(config).exit_code == 0
    write_records(log, 3, 3)
    before = cursor_of(log, receiver.port)
    dead = free_port()
    done = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "audit", "forward", "--once", "-c", str(config)],
        env={"APPLIANCE_AUDIT__FORWARD__PORT": str(dead), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"error: tcp://127.0.0.1:{dead}: connection refused (is the SIEM up?)"
    )
    assert cursor_of(log, receiver.port) == before and before and before["next_index"] == 3
    assert cursor_of(log, dead)["next_index"] == 0  # type: ignore[index]
    assert forward_once(config).exit_code == 0  # the SIEM is back: the rest, from 3
    assert indices(receiver.frames) == list(range(6))


def test_receiver_dying_mid_batch_loses_nothing(
    log: AuditLog, database_url: str, tmp_path: Path
) -> None:
    """The receiver resets the connection after reading 4 of 10 records, then stops
    (killed); the batch fails and the cursor stays. Restarted on the same port, it
    gets the batch again: every record arrives, the repeats carry their log index."""
    write_records(log, 0, 10)
    server = Receiver()
    server.reset_after = 4
    config, _ = configure(tmp_path, database_url, server.port)
    result = forward_once(config)
    assert result.exit_code == 1 and isinstance(result.exception, ForwardError)
    assert "dropped the connection" in result.exception.message
    assert next_of(log) == 0
    first = server.frames
    server.close()
    assert forward_once(config).exit_code == 1  # down: refused, cursor still unmoved
    restarted = Receiver(port=server.port)
    try:
        assert forward_once(config).exit_code == 0
        assert indices(first) == [0, 1, 2, 3]
        assert indices(restarted.frames) == list(range(10))
        assert next_of(log) == 10
    finally:
        restarted.close()


def test_follow_retries_through_an_outage(log: AuditLog, database_url: str, tmp_path: Path) -> None:
    write_records(log, 0, 3)
    port = free_port()
    _, settings = configure(tmp_path, database_url, port, batch_records=2)
    forwarder = forwarder_for(settings, SqlAuditStore(log.store.engine))
    stop, retries = threading.Event(), []
    follower = threading.Thread(
        target=forwarder.follow,
        kwargs={"interval_s": 0.05, "max_backoff_s": 0.2, "stop": stop,
                "on_retry": lambda e, d: retries.append(e.message)},
    )  # fmt: skip
    follower.start()
    try:
        deadline = time.monotonic() + 10
        while len(retries) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert retries and "connection refused" in retries[0]
        server = Receiver(port=port)  # the SIEM comes up
        write_records(log, 3, 4)
        while len(set(indices(server.frames))) < 7 and time.monotonic() < deadline:
            time.sleep(0.02)
        write_records(log, 7, 1)  # followed as it is written
        while len(server.frames) < 8 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        follower.join(timeout=10)
    server.close()
    assert indices(server.frames) == list(range(8))


def test_udp_one_datagram_per_record(log: AuditLog, database_url: str, tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        udp.settimeout(5)
        write_records(log, 0, 3)
        config, _ = configure(tmp_path, database_url, udp.getsockname()[1], transport="udp")
        assert forward_once(config).exit_code == 0
        datagrams = [udp.recv(65535) for _ in range(3)]
    assert indices(datagrams) == [0, 1, 2]
    assert all(d.startswith(b"<") for d in datagrams)  # unframed (RFC 5426)


def test_tampering_stops_forwarding_at_the_record(
    log: AuditLog, migrated_engine: Engine, database_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    write_records(log, 0, 6)
    with migrated_engine.begin() as connection:
        connection.execute(text("UPDATE audit_log SET model = 'other' WHERE idx = 3"))
    config, _ = configure(tmp_path, database_url, receiver.port)
    result = forward_once(config)
    assert result.exit_code == 1 and isinstance(result.exception, VerificationError)
    assert "record 3 " in result.exception.message and "leaf hash" in result.exception.message
    assert indices(receiver.frames) == [0, 1, 2]  # what came before it is delivered
    assert next_of(log) == 3

    # A forwarded record changed afterwards is noticed on the next start.
    with migrated_engine.begin() as connection:
        connection.execute(
            text("UPDATE audit_log SET leaf_hash = :h WHERE idx = 2"), {"h": b"\x00" * 32}
        )
    result = forward_once(config)
    assert isinstance(result.exception, VerificationError)
    assert "record 2 differs from the one forwarded" in result.exception.message


def test_from_index_resends_and_forwarding_is_off_by_default(
    log: AuditLog, database_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    write_records(log, 0, 4)
    config, settings = configure(tmp_path, database_url, receiver.port)
    assert forward_once(config).exit_code == 0
    assert forward_once(config, "--from-index", "2").exit_code == 0
    assert indices(receiver.frames) == [0, 1, 2, 3, 2, 3]  # resent, same indices
    result = forward_once(config, "--from-index", "9")
    assert "cannot start at record 9: the log holds 4" in result.exception.message  # type: ignore[union-attr]

    off = Settings(data_dir=tmp_path, database={"url": database_url})  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"audit\.forward\.host is not set"):
        forwarder_for(off, SqlAuditStore(log.store.engine))
    assert isinstance(forwarder_for(settings, SqlAuditStore(log.store.engine)), Forwarder)


def test_old_cursor_file_is_imported_once_and_left_alone(
    log: AuditLog, database_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    """An upgrade from the file cursor: its position moves into the empty table, so
    nothing is repeated or skipped; the file is then neither read nor changed."""
    write_records(log, 0, 6)
    config, _ = configure(tmp_path, database_url, receiver.port)
    old = tmp_path / "data" / "audit_forward_cursor.json"
    old.parent.mkdir(parents=True)
    stored = {s.entry.index: s.stored_leaf_hash.hex() for s in log.store.iter_entries()}
    content = json.dumps({
        "version": 1, "origin": ORIGIN, "next_index": 4, "last_leaf_hash": stored[3],
        "delivered_at": "2026-01-05T09:00:00.000000Z",
    })  # fmt: skip
    old.write_text(content)
    result = forward_once(config)
    assert result.exit_code == 0, result.output
    said = "".join(result.output.split())  # the console wraps the long path anywhere
    assert (
        f"imported the position (record 4) from the old cursor file {old};".replace(" ", "") in said
    )
    assert indices(receiver.frames) == [4, 5]  # neither 0-3 again nor a gap
    assert old.read_text() == content  # left as it was
    assert next_of(log) == 6
    # Read once: a second run neither imports again nor goes back to the file's 4.
    write_records(log, 6, 1)
    again = forward_once(config)
    assert "imported" not in again.output and indices(receiver.frames) == [4, 5, 6]


def test_old_cursor_file_problems_are_named(
    log: AuditLog, database_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    write_records(log, 0, 2)
    config, _ = configure(tmp_path, database_url, receiver.port)
    cursor = tmp_path / "data" / "audit_forward_cursor.json"
    cursor.parent.mkdir(parents=True)
    cursor.write_text("{not json")
    result = forward_once(config)
    assert isinstance(result.exception, ConfigurationError)
    assert f"cursor file {cursor} is unreadable" in result.exception.message
    cursor.write_text(json.dumps({"origin": "other.example/log", "next_index": 1}))
    result = forward_once(config)
    assert isinstance(result.exception, ConfigurationError)
    assert "belongs to the log 'other.example/log'" in result.exception.message
    assert receiver.frames == [] and cursor_of(log) is None  # nothing imported
    # A cursor past the end of the log: the log was rolled back after forwarding.
    cursor.write_text(json.dumps({"origin": ORIGIN, "next_index": 5, "last_leaf_hash": None}))
    result = forward_once(config)
    assert isinstance(result.exception, VerificationError)
    assert "record 4 was forwarded but is no longer in the audit log" in result.exception.message


def test_each_destination_has_its_own_cursor(
    log: AuditLog, database_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    """Another SIEM (or format) starts from record 0 rather than skipping what it never
    got; an old cursor file is not imported once the table holds a row."""
    write_records(log, 0, 3)
    config, _ = configure(tmp_path, database_url, receiver.port)
    assert forward_once(config).exit_code == 0
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "audit_forward_cursor.json").write_text(
        json.dumps({"origin": ORIGIN, "next_index": 2, "last_leaf_hash": None})
    )
    other = Receiver()
    try:
        config, _ = configure(tmp_path, database_url, other.port, format="cef")
        result = forward_once(config)
        assert result.exit_code == 0, result.output
        assert "imported" not in result.output
        assert len(other.frames) == 3 and b"cn1=0 " in other.frames[0]
    finally:
        other.close()
    with log.store.engine.connect() as connection:
        rows = connection.execute(select(audit_forward_cursor)).mappings().all()
    assert {(r["destination"], r["next_index"]) for r in rows} == {
        (f"127.0.0.1:{receiver.port}:syslog", 3), (f"127.0.0.1:{other.port}:cef", 3),
    }  # fmt: skip


def test_one_forwarder_per_destination(
    log: AuditLog, database_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    """A second forwarder is refused while the first holds the cursor's lease, and
    takes over once it is released or has run out (the first one crashed)."""
    write_records(log, 0, 3)
    config, settings = configure(tmp_path, database_url, receiver.port)
    first = forwarder_for(settings, SqlAuditStore(log.store.engine))
    assert first.run_once() == 3
    result = forward_once(config)
    assert result.exit_code == 1 and isinstance(result.exception, ForwardError)
    assert f"another forwarder ({first.holder}) holds the cursor" in result.exception.message
    first.release()
    write_records(log, 3, 1)
    assert "done: 1 record(s) forwarded; next is 4" in forward_once(config).output

    crashed = forwarder_for(settings, SqlAuditStore(log.store.engine))
    assert crashed.position().next_index == 4  # holds the lease, then never releases it
    later = forwarder_for(settings, SqlAuditStore(log.store.engine))
    later._now = lambda: dt.datetime.now(dt.UTC) + dt.timedelta(seconds=crashed.lease_s + 1)
    write_records(log, 4, 1)
    assert later.run_once() == 1
    # The crashed one, back, cannot move the cursor: the batch is not counted twice.
    write_records(log, 5, 1)
    with pytest.raises(ForwardError, match="another forwarder"):
        crashed.forward_batch()
    assert indices(receiver.frames) == [0, 1, 2, 3, 4]
    assert next_of(log) == 5


def test_a_second_follower_waits_for_the_lease(
    log: AuditLog, database_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    """`appliance audit forward` (follow) started while another forwarder holds the
    cursor sends nothing and retries; released, it takes over; on SIGTERM it releases."""
    write_records(log, 0, 3)
    config, settings = configure(
        tmp_path, database_url, receiver.port, poll_interval_s=0.1, max_backoff_s=0.2
    )
    first = forwarder_for(settings, SqlAuditStore(log.store.engine))
    first.position()  # holds the lease
    follower = subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", "audit", "forward", "-c", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "400"},
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(follower.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        deadline = time.monotonic() + 30
        while not any("retrying in" in line for line in lines) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert f"another forwarder ({first.holder}) holds the cursor" in "".join(lines)
        assert receiver.frames == [] and follower.poll() is None
        first.release()
        while len(receiver.frames) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        follower.send_signal(signal.SIGTERM)
        follower.wait(timeout=30)
        reader.join(timeout=10)
    output = "".join(lines)
    assert follower.returncode == 0, output
    assert "stopped; next is 3" in output, output
    assert indices(receiver.frames) == [0, 1, 2]
    assert cursor_of(log)["holder"] is None  # type: ignore[index]
