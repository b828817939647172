"""Server-sent events, just enough to watch a vLLM stream go by.

The gateway forwards bytes; this splitter only finds event boundaries so it can read
``usage`` and, where the gateway itself asked for usage, hold back that one chunk.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = [
    "SseSplitter",
    "Usage",
    "event_data",
    "is_usage_only_chunk",
    "parse_event_json",
    "usage_of",
]

_SEPARATORS = (b"\r\n\r\n", b"\n\n", b"\r\r")


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int | None
    completion_tokens: int | None


class SseSplitter:
    """Feed bytes as they arrive; get back complete events (terminator included).
    Concatenating every returned event and :meth:`pending` gives back the input."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        self._buffer += chunk
        events: list[bytes] = []
        while True:
            cut = -1
            for separator in _SEPARATORS:
                index = self._buffer.find(separator)
                if index != -1 and (cut == -1 or index + len(separator) < cut):
                    cut = index + len(separator)
            if cut == -1:
                return events
            events.append(self._buffer[:cut])
            self._buffer = self._buffer[cut:]

    def pending(self) -> bytes:
        return self._buffer


def event_data(event: bytes) -> str | None:
    """The joined ``data:`` lines of one event, or None when it has none."""
    lines = []
    for raw in event.decode("utf-8", "replace").splitlines():
        if raw.startswith("data:"):
            value = raw[5:]
            lines.append(value[1:] if value.startswith(" ") else value)
    return "\n".join(lines) if lines else None


def _json(data: str | None) -> dict[str, Any] | None:
    if data is None or data == "[DONE]":
        return None
    try:
        parsed = json.loads(data)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def usage_of(body: dict[str, Any] | None) -> Usage | None:
    if body is None:
        return None
    usage = body.get("usage")
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens")
    completion = usage.get("completion_tokens")
    return Usage(
        prompt_tokens=prompt if isinstance(prompt, int) else None,
        completion_tokens=completion if isinstance(completion, int) else None,
    )


def parse_event_json(event: bytes) -> dict[str, Any] | None:
    return _json(event_data(event))


def is_usage_only_chunk(body: dict[str, Any] | None) -> bool:
    """vLLM's final ``include_usage`` chunk: usage and an empty choices list."""
    return body is not None and body.get("choices") == [] and usage_of(body) is not None
