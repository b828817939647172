"""Streams carry the answer's receipt as an SSE comment just before their final event
(appliance/audit/receipts.py): tests that compare a relayed stream with the engine's
take it out first, and check where it stood."""

from __future__ import annotations

import re

__all__ = ["without_receipt"]

_RECEIPT = re.compile(rb": receipt ([A-Za-z0-9_-]+)\n\n")


def without_receipt(stream: bytes) -> tuple[bytes, str]:
    """(the stream without its receipt comment, the receipt); fails unless there is
    exactly one, followed by exactly one event (the end of the answer)."""
    found = list(_RECEIPT.finditer(stream))
    assert len(found) == 1, f"expected one receipt comment, found {len(found)}"
    match = found[0]
    after = stream[match.end() :]
    assert after.endswith(b"\n\n") and after.count(b"\n\n") == 1, after[:200]
    return stream[: match.start()] + after, match.group(1).decode()
