"""appliance/audit/forward_transport.py: destinations, TLS settings and the error a
SIEM outage becomes (the wire itself: tests/integration/test_audit_forward.py and
test_rsyslog_forward.py)."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from appliance.audit.forward_transport import DEFAULT_PORTS, Destination, ForwardError, deliver
from appliance.errors import ConfigurationError
from tests.support.servers import free_port


def test_default_ports_are_the_rfcs() -> None:
    assert DEFAULT_PORTS == {"tls": 6514, "tcp": 514, "udp": 514}


def test_destination_names_itself() -> None:
    assert str(Destination("tls", "siem.example", 6514)) == "tls://siem.example:6514"
    assert str(Destination("tcp", "2001:db8::1", 514)) == "tcp://[2001:db8::1]:514"


def test_tls_context_verifies_and_needs_tls_1_2() -> None:
    context = Destination("tls", "siem.example", 6514).tls_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_unreadable_tls_files_are_configuration_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(ConfigurationError, match=r"audit\.forward\.ca_file"):
        Destination("tls", "h", 1, ca_file=missing).tls_context()
    with pytest.raises(ConfigurationError, match=r"audit\.forward\.cert_file"):
        Destination("tls", "h", 1, cert_file=missing, key_file=missing).tls_context()


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_nobody_listening_is_a_forward_error(transport: str) -> None:
    destination = Destination(transport, "127.0.0.1", free_port(), timeout_s=2)  # type: ignore[arg-type]
    with pytest.raises(ForwardError, match="connection refused"):
        deliver(destination, [b"<86>1 - - - - - - x"])
