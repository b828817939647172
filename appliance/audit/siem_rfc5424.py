"""RFC 5424 (The Syslog Protocol) primitives: header, STRUCTURED-DATA, framing.

Pure: values in, bytes out. §6: header, STRUCTURED-DATA (§6.3, escaping §6.3.3),
NILVALUE; octet-counting framing for stream transports: RFC 6587 §3.4.1 (TCP) and
RFC 5425 §4.3 (TLS).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

__all__ = [
    "FACILITIES",
    "NILVALUE",
    "escape_sd_value",
    "octet_counted",
    "sd_element",
    "syslog_message",
    "syslog_timestamp",
]

NILVALUE = "-"
# RFC 5424 §6.2.1 table 1 (numerical codes); names as in syslog.h.
FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6,
    "news": 7, "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "audit": 13,
    "alert": 14, "clock": 15, "local0": 16, "local1": 17, "local2": 18, "local3": 19,
    "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}  # fmt: skip
_UTF8_BOM = b"\xef\xbb\xbf"


def syslog_timestamp(value: datetime) -> str:
    """RFC 5424 §6.2.3 (RFC 3339): microseconds with trailing zeros dropped, ``Z`` for
    UTC, else the numeric offset."""
    if value.tzinfo is None:
        raise ValueError("syslog timestamps must be timezone-aware")
    text = value.replace(tzinfo=None).isoformat(timespec="seconds")
    if value.microsecond:
        text += "." + f"{value.microsecond:06d}".rstrip("0")
    offset = value.utcoffset()
    if not offset:
        return text + "Z"
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return f"{text}{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _header_field(value: str | None, width: int) -> str:
    """PRINTUSASCII (%d33-126), at most ``width`` octets, NILVALUE when empty."""
    if not value:
        return NILVALUE
    clean = "".join(c if "!" <= c <= "~" else "_" for c in value)[:width]
    return clean or NILVALUE


def _sd_name(name: str) -> str:
    """SD-NAME (§6.3.2, §6.3.3): 1-32 PRINTUSASCII except ``=``, space, ``]``, ``"``."""
    if not 1 <= len(name) <= 32 or any(not "!" <= c <= "~" or c in '= ]"' for c in name):
        raise ValueError(f"not an RFC 5424 SD-NAME: {name!r}")
    return name


def escape_sd_value(value: str) -> str:
    """PARAM-VALUE (§6.3.3): ``"``, ``\\`` and ``]`` MUST be escaped with a backslash."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def sd_element(sd_id: str, params: Sequence[tuple[str, str]]) -> str:
    """``[SD-ID PARAM-NAME="PARAM-VALUE" ...]`` (§6.3.1)."""
    body = "".join(f' {_sd_name(k)}="{escape_sd_value(v)}"' for k, v in params)
    return f"[{_sd_name(sd_id)}{body}]"


def syslog_message(
    *,
    facility: int,
    severity: int,
    timestamp: datetime | None,
    hostname: str | None,
    app_name: str | None,
    procid: str | None,
    msgid: str | None,
    structured_data: Sequence[str] = (),
    msg: str | None = None,
    bom: bool = False,
) -> bytes:
    """One RFC 5424 message (§6), unframed. ``bom`` marks MSG as UTF-8 (MSG-UTF8);
    without it MSG is MSG-ANY, which is what most receivers parse CEF and JSON from."""
    if not (0 <= facility <= 23 and 0 <= severity <= 7):
        raise ValueError("facility is 0-23 and severity 0-7")
    header = " ".join(
        (
            f"<{facility * 8 + severity}>1",  # PRI (§6.2.1) and VERSION
            syslog_timestamp(timestamp) if timestamp else NILVALUE,
            _header_field(hostname, 255),
            _header_field(app_name, 48),
            _header_field(procid, 128),
            _header_field(msgid, 32),
            "".join(structured_data) or NILVALUE,
        )
    ).encode("utf-8", "replace")  # ASCII but for PARAM-VALUEs, which are UTF-8 (§6.3.3)
    if msg is None:
        return header
    return header + b" " + (_UTF8_BOM if bom else b"") + msg.encode("utf-8", "replace")


def octet_counted(message: bytes) -> bytes:
    """RFC 6587 §3.4.1 / RFC 5425 §4.3: ``MSG-LEN SP SYSLOG-MSG`` (length in octets)."""
    return b"%d %s" % (len(message), message)
