"""A real rsyslogd (Debian: rsyslog, rsyslog-gnutls) as the SOC's receiver, one per
test: its own config, work directory and pid file under tmp_path, in the foreground
(``-n``), needing no root. It listens with imtcp on a loopback port over TLS (RFC 5425,
GnuTLS driver), requires a client certificate from the test CA, and writes each
message's raw bytes, one per line, with omfile.

The config is the example in docs/audit.md ("An rsyslog receiver"): keep them alike.
Its ``main_queue`` is Direct, so a message is in the output file before imtcp reads on
and sees the forwarder's close; with rsyslog's default in-memory queue, a SIGKILL
loses what the queue held after the forwarder was told it was read.

Tests skip with the reason when rsyslogd or its GnuTLS driver is missing, or fail
when APPLIANCE_TEST_REQUIRE_RSYSLOG=1 (CI, where `make install` installs them).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

__all__ = ["REQUIRE_RSYSLOG_ENV", "Rsyslog", "rsyslog_config", "rsyslogd_or_skip"]

REQUIRE_RSYSLOG_ENV = "APPLIANCE_TEST_REQUIRE_RSYSLOG"
GTLS_DRIVERS = (
    Path("/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so"),
    Path("/usr/lib/aarch64-linux-gnu/rsyslog/lmnsd_gtls.so"),
    Path("/usr/lib/rsyslog/lmnsd_gtls.so"),
    Path("/usr/lib64/rsyslog/lmnsd_gtls.so"),
)


def rsyslogd_or_skip() -> Path:
    """rsyslogd with its GnuTLS driver, or skip (fail under APPLIANCE_TEST_REQUIRE_RSYSLOG=1)."""
    found = shutil.which("rsyslogd") or next(
        (p for p in ("/usr/sbin/rsyslogd", "/sbin/rsyslogd") if Path(p).exists()), None
    )
    reason = ""
    if found is None:
        reason = "rsyslogd is not installed (Debian: apt-get install rsyslog rsyslog-gnutls)"
    elif not any(driver.exists() for driver in GTLS_DRIVERS):
        reason = "rsyslog's GnuTLS driver is not installed (Debian: rsyslog-gnutls)"
    if reason:
        if os.environ.get(REQUIRE_RSYSLOG_ENV) == "1":
            pytest.fail(f"{REQUIRE_RSYSLOG_ENV}=1 but {reason}")
        pytest.skip(reason)
    assert found is not None
    return Path(found)


def rsyslog_config(
    *, port: int, work_dir: Path, output: Path, ca: Path, cert: Path, key: Path
) -> str:
    """The receiver's rsyslog.conf (RainerScript)."""
    return f"""\
global(
    workDirectory="{work_dir}"
    maxMessageSize="64k"
    defaultNetstreamDriver="gtls"
    defaultNetstreamDriverCAFile="{ca}"
    defaultNetstreamDriverCertFile="{cert}"
    defaultNetstreamDriverKeyFile="{key}"
)
# Direct: each message is written before imtcp reads on, so what the forwarder was
# told is read survives a crash of rsyslogd.
main_queue(queue.type="Direct")
module(
    load="imtcp"
    streamDriver.name="gtls"
    streamDriver.mode="1"
    streamDriver.authMode="x509/certvalid"
)
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="appliance")
template(name="raw" type="string" string="%rawmsg%\\n")
ruleset(name="appliance") {{
    action(type="omfile" file="{output}" template="raw")
}}
"""


class Rsyslog:
    """One rsyslogd process (restartable on the same port and files)."""

    def __init__(self, binary: Path, root: Path, *, port: int, pki: Path):
        self.binary = binary
        self.root = root
        self.port = port
        self.output = root / "out" / "appliance.log"
        self.config = root / "rsyslog.conf"
        self.pid_file = root / "rsyslogd.pid"
        self.log = root / "rsyslogd.stderr"
        for folder in (root / "work", root / "out"):
            folder.mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            rsyslog_config(
                port=port,
                work_dir=root / "work",
                output=self.output,
                ca=pki / "ca.crt",
                cert=pki / "siem.crt",
                key=pki / "siem.key",
            )
        )
        self.process: subprocess.Popen[bytes] | None = None

    def check_config(self) -> None:
        result = subprocess.run(
            [str(self.binary), "-N1", "-f", str(self.config)],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr

    def start(self, timeout_s: float = 15.0) -> None:
        assert self.process is None or self.process.poll() is not None
        self.pid_file.unlink(missing_ok=True)
        with self.log.open("ab") as stderr:
            self.process = subprocess.Popen(
                [str(self.binary), "-n", "-f", str(self.config), "-i", str(self.pid_file)],
                stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr,
            )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text(errors="replace")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return  # listening (the probe is a connection without a handshake)
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"rsyslogd did not listen on {self.port}: {self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no queue flush (a crash, an OOM kill)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def lines(self) -> list[bytes]:
        if not self.output.exists():
            return []
        return [line for line in self.output.read_bytes().split(b"\n") if line]

    def written(self) -> bytes:
        """Every byte rsyslogd wrote under its folder (output, work files, its log)."""
        return b"".join(p.read_bytes() for p in sorted(self.root.rglob("*")) if p.is_file())
