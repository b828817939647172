"""``appliance audit forward`` into a real rsyslogd (tests/support/rsyslog.py) over TLS
with client certificates, in CEF and in OCSF: every request's metadata arrives, the
OCSF events validate against OCSF's schema, no prompt byte reaches rsyslog, and a
SIGKILL of rsyslogd mid-run loses nothing.

At least once, honestly: the batch in flight when rsyslogd dies may have been partly
written by it, and is sent again. Those repeats are byte-identical and carry the dedupe
key (the log's origin and the record's index), so a SIEM keeps one copy per key; the
test shows that keeping one per key gives exactly the audit log, and that repeats come
only from one batch.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from appliance.audit.log import AuditLog
from appliance.audit.records import AuditEvent, Outcome
from appliance.audit.store import SqlAuditStore
from appliance.db.tables import audit_forward_cursor
from appliance.pki import init_ca, issue
from tests.integration.conftest import GatewayHarness
from tests.support.audit import ORIGIN, build_log, content_record, make_record
from tests.support.ocsf import ocsf_problems
from tests.support.requests import CHAT, auth, chat_body
from tests.support.rsyslog import Rsyslog, rsyslogd_or_skip
from tests.support.servers import free_port

CANARY = "CANARY-9e2c prompt: the tender for the new hospital wing is 41.7 million"
BATCH = 3


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    directory = tmp_path / "pki"
    now = dt.datetime.now(dt.UTC)
    init_ca(directory, gateway_hosts=["127.0.0.1"], engines={}, days=2, now=now)
    issue(directory, "siem", ["127.0.0.1", "localhost"], days=2, now=now)
    issue(directory, "forwarder", ["forwarder"], days=2, now=now)
    return directory


@pytest.fixture
def rsyslog(tmp_path: Path, pki: Path) -> Iterator[Rsyslog]:
    server = Rsyslog(rsyslogd_or_skip(), tmp_path / "rsyslog", port=free_port(), pki=pki)
    server.check_config()
    server.start()
    yield server
    server.stop()


def forward_settings(rsyslog: Rsyslog, pki: Path, fmt: str) -> dict[str, Any]:
    return {
        "host": "127.0.0.1", "port": rsyslog.port, "transport": "tls", "format": fmt,
        "ca_file": str(pki / "ca.crt"), "cert_file": str(pki / "forwarder.crt"),
        "key_file": str(pki / "forwarder.key"), "timeout_s": 5, "batch_records": BATCH,
        "poll_interval_s": 0.05, "max_backoff_s": 0.2,
    }  # fmt: skip


def write_config(path: Path, settings: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(settings))
    return path


def appliance(*args: str, **popen: Any) -> subprocess.Popen[str]:
    """The CLI as its own process, as an operator (or systemd) runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    env["COLUMNS"] = "400"  # one line per message (rich wraps at the terminal width)
    return subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", *args], env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **popen,
    )  # fmt: skip


def write_records(log: AuditLog, start: int, count: int) -> None:
    """Requests whose prompt holds the canary, their answers, a refusal now and then."""
    records = []
    for i in range(start, start + count):
        prompt = {"messages": [{"role": "user", "content": f"{CANARY} #{i}"}]}
        if i % 7 == 6:
            records.append(
                make_record(
                    f"req-{i}",
                    event=AuditEvent.DENIED,
                    outcome=Outcome.DENIED,
                    status_code=403,
                    subject="apikey:mallory",
                    username="mallory",
                    model="secret-model",
                    denial_reason="model_not_allowed",
                    content=prompt,
                )
            )
        else:
            records.append(content_record(i, content=prompt, client_addr="10.0.0.9"))
    log.append_batch(records)


def parse(line: bytes, fmt: str) -> dict[str, Any]:
    """A line rsyslogd wrote (one RFC 5424 message): its dedupe key and metadata."""
    assert line.startswith(b"<") and b">1 " in line[:6], line[:40]
    msg = line.split(b" ", 7)[7].decode("utf-8")
    if fmt == "ocsf":
        event = json.loads(msg)
        return {
            "origin": event["metadata"]["log_name"], "index": event["metadata"]["sequence"],
            "leaf": event["unmapped"]["leaf_hash"], "request": event["metadata"]["correlation_uid"],
            "record": event["metadata"]["uid"], "event": event,
        }  # fmt: skip
    assert msg.startswith("CEF:0|sovereign-appliance|appliance|"), msg[:60]
    ext = dict(re.findall(r"(?:^|(?<= ))([A-Za-z0-9]+)=((?:[^ \\]|\\.)*)(?= [A-Za-z0-9]+=|$)", msg))
    return {
        "origin": ext["deviceExternalId"], "index": int(ext["cn1"]), "leaf": ext["cs5"],
        "request": ext["cs6"], "record": ext["externalId"],
    }  # fmt: skip


def check_against_log(
    lines: list[bytes], fmt: str, store: SqlAuditStore, origin: str
) -> Counter[tuple[str, int]]:
    """Keeping one message per (origin, index) gives exactly the audit log, record for
    record (leaf hash, record and request ids); repeats are byte-identical. Returns
    how often each key arrived."""
    stored = {s.entry.index: s for s in store.iter_entries()}
    assert len(stored) == store.size()
    seen: dict[tuple[str, int], bytes] = {}
    counts: Counter[tuple[str, int]] = Counter()
    for line in lines:
        item = parse(line, fmt)
        key = (item["origin"], item["index"])
        counts[key] += 1
        assert seen.setdefault(key, line) == line, f"two different messages for {key}"
        entry = stored[item["index"]]
        assert item["leaf"] == entry.stored_leaf_hash.hex()
        assert item["record"] == entry.entry.record.record_id
        assert item["request"] == entry.entry.record.request_id
        if fmt == "ocsf" and counts[key] == 1:
            assert ocsf_problems(item["event"]) == [], item["event"]
    assert set(counts) == {(origin, i) for i in range(store.size())}
    return counts


def cursor_next(engine: Engine) -> int:
    """The forwarder's position, from its row in the database (0 before it has one)."""
    with engine.connect() as connection:
        value = connection.execute(select(audit_forward_cursor.c.next_index)).scalar()
    return int(value or 0)


def wait_for(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


@pytest.mark.parametrize("fmt", ["cef", "ocsf"])
def test_rsyslog_killed_mid_run_loses_nothing(
    migrated_engine: Engine, database_url: str, tmp_path: Path, pki: Path,
    rsyslog: Rsyslog, fmt: str,
) -> None:  # fmt: skip
    log = build_log(migrated_engine)
    write_records(log, 0, 900)
    cursor = migrated_engine
    config = write_config(
        tmp_path / "appliance.yaml",
        {
            "data_dir": str(tmp_path / "data"), "database": {"url": database_url},
            "audit": {"origin": ORIGIN, "forward": forward_settings(rsyslog, pki, fmt)},
        },
    )  # fmt: skip
    forwarder = appliance("audit", "forward", "--config", str(config))
    try:
        # 1. Mid-run: rsyslogd has written some records, the forwarder has more to send.
        wait_for(lambda: len(rsyslog.lines()) >= 150, 60, "the first records at rsyslog")
        rsyslog.kill()
        written_at_kill = len(rsyslog.lines())
        # 2. The SIEM is down while traffic goes on; the forwarder retries, the cursor
        #    stays short of the log.
        write_records(log, 900, 60)
        time.sleep(0.5)
        assert written_at_kill < 960 and cursor_next(cursor) < 960
        assert forwarder.poll() is None
        # 3. rsyslogd comes back on the same port: the forwarder catches up by itself.
        rsyslog.start()
        wait_for(lambda: cursor_next(cursor) == 960, 120, "the forwarder to catch up")
    finally:
        forwarder.send_signal(signal.SIGTERM)
        output, _ = forwarder.communicate(timeout=30)
    assert forwarder.returncode == 0, output
    assert "retrying in" in output and "connection refused" in output, output
    assert "stopped; next is 960" in output, output

    counts = check_against_log(rsyslog.lines(), fmt, log.store, ORIGIN)
    repeated = sorted(index for (_, index), n in counts.items() if n > 1)
    assert all(n <= 2 for n in counts.values())
    # Only the batch in flight at the kill can come twice.
    assert len(repeated) <= BATCH
    assert repeated == list(range(repeated[0], repeated[0] + len(repeated))) if repeated else True
    assert CANARY.encode() not in rsyslog.written() and b"CANARY" not in rsyslog.written()


@pytest.mark.parametrize("fmt", ["cef", "ocsf"])
def test_gateway_traffic_reaches_rsyslog(
    client: TestClient,
    harness: GatewayHarness,
    tmp_path: Path,
    pki: Path,
    rsyslog: Rsyslog,
    fmt: str,
) -> None:
    """Real requests through the gateway (served, streamed, refused): each one's
    metadata reaches rsyslogd; its prompt does not."""
    user = auth(harness.user_key)
    asked = [chat_body(messages=[{"role": "user", "content": f"{CANARY} ({i})"}]) for i in range(3)]
    request_ids = [
        client.post(CHAT, json=body, headers=user).headers["x-request-id"] for body in asked
    ]
    with client.stream("POST", CHAT, json={**asked[0], "stream": True}, headers=user) as streamed:
        assert streamed.status_code == 200
        request_ids.append(streamed.headers["x-request-id"])
        b"".join(streamed.iter_bytes())
    refused = client.post(
        CHAT, json=chat_body("not-a-model", messages=asked[1]["messages"]), headers=user
    )
    assert refused.status_code >= 400
    request_ids.append(refused.headers["x-request-id"])
    origin = harness.settings.audit.origin
    config = write_config(
        tmp_path / "forward.yaml",
        {
            "data_dir": str(tmp_path / "forwarder"),
            "database": {"url": harness.settings.database_url},
            "audit": {"origin": origin, "forward": forward_settings(rsyslog, pki, fmt)},
        },
    )

    done = appliance("audit", "forward", "--once", "--config", str(config))
    output, _ = done.communicate(timeout=120)
    assert done.returncode == 0, output

    size = harness.store.size()
    wait_for(lambda: len(rsyslog.lines()) >= size, 10, "rsyslogd to write every record")
    counts = check_against_log(rsyslog.lines(), fmt, harness.store, origin)
    assert set(counts.values()) == {1}  # no outage, no repeat
    by_request = Counter(parse(line, fmt)["request"] for line in rsyslog.lines())
    for request_id in request_ids:
        assert by_request[request_id] >= 1, request_id
    assert CANARY.encode() not in rsyslog.written() and b"CANARY" not in rsyslog.written()
