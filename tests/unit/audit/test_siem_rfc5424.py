"""appliance/audit/siem_rfc5424.py: RFC 5424 against its published examples
(tests/vectors/siem/), header and STRUCTURED-DATA escaping edges, round trips, and
octet-counting framing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.audit.siem_rfc5424 import (
    FACILITIES,
    escape_sd_value,
    octet_counted,
    sd_element,
    syslog_message,
    syslog_timestamp,
)
from tests.support.siem import (
    RFC5424,
    parse_sd,
)


@pytest.mark.parametrize("vector", RFC5424["messages"], ids=lambda v: v["name"])
def test_rfc5424_examples(vector: dict[str, Any]) -> None:
    message = syslog_message(
        facility=vector["facility"],
        severity=vector["severity"],
        timestamp=datetime.fromisoformat(vector["timestamp"]),
        hostname=vector["hostname"],
        app_name=vector["app_name"],
        procid=vector["procid"],
        msgid=vector["msgid"],
        structured_data=[
            sd_element(sd["id"], [tuple(p) for p in sd["params"]])
            for sd in vector["structured_data"]
        ],
        msg=vector["msg"],
        bom=vector["bom"],
    )
    assert message == vector["expected"].encode("utf-8")


@pytest.mark.parametrize("text", RFC5424["timestamps"])
def test_rfc5424_timestamps(text: str) -> None:
    assert syslog_timestamp(datetime.fromisoformat(text)) == text


def test_timestamp_edges() -> None:
    assert syslog_timestamp(datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2025-01-02T03:04:05Z"
    east = timezone(timedelta(hours=5, minutes=30))
    assert syslog_timestamp(datetime(2025, 1, 2, 3, 4, 5, 100, east)).endswith(".0001+05:30")
    with pytest.raises(ValueError):
        syslog_timestamp(datetime(2025, 1, 2))  # naive


def test_pri_nilvalue_and_header_fields() -> None:
    message = syslog_message(
        facility=FACILITIES["local7"], severity=7, timestamp=None, hostname="",
        app_name="a" * 60, procid=None, msgid="bad id\twith\u00e9", msg=None,
    )  # fmt: skip
    assert message == b"<191>1 - - " + b"a" * 48 + b" - bad_id_with_ -"
    assert syslog_message(
        facility=0, severity=0, timestamp=None, hostname=None, app_name=None, procid=None,
        msgid=None,
    ).startswith(b"<0>1 - - - - - -")  # fmt: skip
    for facility, severity in ((24, 0), (0, 8), (-1, 0)):
        with pytest.raises(ValueError):
            syslog_message(
                facility=facility, severity=severity, timestamp=None, hostname=None,
                app_name=None, procid=None, msgid=None,
            )  # fmt: skip


def test_sd_param_escaping() -> None:
    assert escape_sd_value('a"b\\c]d') == 'a\\"b\\\\c\\]d'
    assert escape_sd_value("\\]") == "\\\\\\]"  # the backslash first, then the bracket
    assert (
        sd_element("x@1", [("k", "[a=b]"), ("u", "\u00fcber")]) == '[x@1 k="[a=b\\]" u="\u00fcber"]'
    )
    assert sd_element("x@1", []) == "[x@1]"


@pytest.mark.parametrize("name", ["", "a b", "a=b", "a]b", 'a"b', "x" * 33, "\u00fc", "a\nb"])
def test_sd_names_are_checked(name: str) -> None:
    with pytest.raises(ValueError):
        sd_element(name, [])
    with pytest.raises(ValueError):
        sd_element("x@1", [(name, "v")])


@given(st.text())
def test_sd_value_round_trip(value: str) -> None:
    assert parse_sd(sd_element("x@1", [("v", value)])) == {"v": value}


def test_octet_counting_counts_octets() -> None:
    assert octet_counted(b"<13>1 - - - - - -") == b"17 <13>1 - - - - - -"
    assert octet_counted("h\u00e9".encode()) == b"3 h\xc3\xa9"
