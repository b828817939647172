"""What of a chat request leaves for an external provider, and the originals put back
into what comes back (issue #17). Pure: values in, values out.

The scan and the pseudonymisation cover **every string of the body**, not only the
messages' text: a tool's description, a tool call's arguments, ``user``, ``metadata`` or
a ``response_format`` schema leave too. Only the fields that name the protocol's own
things (``model``, ``role``, ``type``, ids, enum-like options) are left out. Parts that
cannot be scanned (images, audio, files) are reported by :func:`unscannable_parts`; the
gateway refuses them for any provider below ``restricted`` (fail closed: what cannot be
read cannot be classified).

On the way back, every string of the answer is re-identified (only placeholders this
request issued are replaced, so this is safe anywhere); a stream is re-identified per
choice and field with :class:`~appliance.egress.StreamingReidentifier`, so a placeholder
split across chunks is still restored, and the held-back tails are sent in one extra
chunk just before the chunk that finishes the choice.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from appliance.egress.placeholders import PlaceholderMap
from appliance.egress.pseudonymise import Pseudonymiser
from appliance.egress.reidentify import StreamingReidentifier, reidentify
from appliance.gateway.sse import event_data

__all__ = [
    "StreamReidentifier",
    "pseudonymise_body",
    "reidentify_answer",
    "request_texts",
    "unscannable_parts",
]

# Fields whose strings name the protocol's own things, never the caller's data: neither
# scanned nor rewritten (a rewritten ``role`` or ``model`` would break the request). Ids
# are the caller's strings, so they are scanned: a tool call's ``id`` and the
# ``tool_call_id`` answering it get the same placeholder, so they still match.
_PROTOCOL_FIELDS = frozenset(
    {
        "model", "role", "type", "tool_choice", "reasoning_effort", "service_tier",
        "detail", "format", "modalities", "finish_reason", "object",
    }
)  # fmt: skip
# Integers this long may be identifiers (cards, accounts, national numbers).
_LONG_NUMBER = 10**5
# Content parts whose payload is not text: they cannot be scanned.
_UNSCANNABLE = frozenset({"image_url", "input_audio", "file", "input_image", "input_file"})


def _map_strings(value: Any, change: Callable[[str], str], field: str | None = None) -> Any:
    """``value`` with every string outside the protocol fields passed through
    ``change``; containers are copied, the input is never modified."""
    if isinstance(value, str):
        return value if field in _PROTOCOL_FIELDS else change(value)
    if isinstance(value, dict):
        return {change(key): _map_strings(item, change, key) for key, item in value.items()}
    if isinstance(value, list):
        return [_map_strings(item, change, field) for item in value]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= _LONG_NUMBER:
        # A card or account number sent as a JSON number: scanned as its digits, and
        # replaced by the placeholder string when it is a finding.
        text = str(value)
        changed = change(text)
        return value if changed == text else changed
    return value


def request_texts(body: dict[str, Any]) -> list[str]:
    """Every string of ``body`` that would leave and is the caller's data, in order."""
    texts: list[str] = []

    def collect(text: str) -> str:
        texts.append(text)
        return text

    _map_strings(body, collect)
    return texts


def unscannable_parts(body: dict[str, Any]) -> list[str]:
    """The types of the content parts that are not text (sorted, each once)."""
    found: set[str] = set()

    def visit(value: Any) -> None:
        if isinstance(value, dict):
            if value.get("type") in _UNSCANNABLE:
                found.add(str(value["type"]))
            for item in value.values():
                visit(item)
        elif isinstance(value, list):
            for item in value:
                visit(item)

    visit(body.get("messages"))
    visit(body.get("input"))
    return sorted(found)


def pseudonymise_body(
    body: dict[str, Any], pseudonymiser: Pseudonymiser
) -> tuple[dict[str, Any], PlaceholderMap]:
    """``body`` with every finding at or above the pseudonymiser's threshold replaced
    by its placeholder, in every string that leaves; and the map to undo it."""
    pseudonymiser.reserve(request_texts(body))  # placeholder-shaped input is never issued
    rewritten = _map_strings(body, pseudonymiser.text)
    return rewritten, pseudonymiser.mapping


def reidentify_answer(body: bytes, mapping: PlaceholderMap) -> bytes:
    """A whole (not streamed) answer with the originals back; unreadable bodies and
    answers of a request that issued no placeholder pass unchanged."""
    if not mapping:
        return body
    try:
        answer = json.loads(body)
    except ValueError:
        return body
    restored = _map_strings(answer, lambda text: reidentify(text, mapping))
    return json.dumps(restored, ensure_ascii=False).encode("utf-8")


# The streamed fields of a chunk's choice that carry the model's text.
_DELTA_TEXTS = ("content", "reasoning_content", "reasoning", "refusal")


class StreamReidentifier:
    """Re-identifies the SSE events of one streamed chat or text completion. Feed each
    whole event to :meth:`event`; call :meth:`end` once the stream has ended."""

    def __init__(self, mapping: PlaceholderMap) -> None:
        self._mapping = mapping
        # (choice, field path) -> its re-identifier; paths: "text", ("delta", name),
        # ("tool", call index).
        self._streams: dict[tuple[int, object], StreamingReidentifier] = {}
        self._template: dict[str, Any] = {}

    def _feed(self, choice: int, path: object, text: str) -> str:
        stream = self._streams.get((choice, path))
        if stream is None:
            stream = self._streams[(choice, path)] = StreamingReidentifier(self._mapping)
        return stream.feed(text)

    def _tails(self, choice: int) -> dict[object, str]:
        """Flush the held-back text of ``choice``, by field path."""
        tails: dict[object, str] = {}
        for (index, path), stream in list(self._streams.items()):
            if index == choice:
                tail = stream.flush()
                if tail:
                    tails[path] = tail
                del self._streams[(index, path)]
        return tails

    def _tail_event(self, choice: int) -> bytes | None:
        tails = self._tails(choice)
        if not tails:
            return None
        entry: dict[str, Any] = {"index": choice, "finish_reason": None}
        delta: dict[str, Any] = {}
        calls = []
        for path, tail in tails.items():
            if path == "text":
                entry["text"] = tail
            elif isinstance(path, tuple) and path[0] == "delta":
                delta[path[1]] = tail
            elif isinstance(path, tuple) and path[0] == "tool":
                calls.append({"index": path[1], "function": {"arguments": tail}})
        if calls:
            delta["tool_calls"] = calls
        if "text" not in entry:
            entry["delta"] = delta
        chunk = {**self._template, "choices": [entry]}
        return _event(chunk)

    def event(self, event: bytes) -> bytes:
        """The event as the client gets it: re-identified, preceded by the held-back
        tails of each choice it finishes."""
        data = event_data(event)
        if data is None or data == "[DONE]":
            return self.end() + event if data == "[DONE]" else event
        try:
            chunk = json.loads(data)
        except ValueError:
            return event
        if not isinstance(chunk, dict) or not isinstance(chunk.get("choices"), list):
            return event
        self._template = {k: chunk[k] for k in ("id", "object", "created", "model") if k in chunk}
        before: list[bytes] = []
        choices = []
        for entry in chunk["choices"]:
            if not isinstance(entry, dict):
                choices.append(entry)
                continue
            choice = entry.get("index", 0) if isinstance(entry.get("index"), int) else 0
            choices.append(self._choice(choice, entry))
            if entry.get("finish_reason") is not None:
                tail = self._tail_event(choice)
                if tail is not None:
                    before.append(tail)
        return b"".join(before) + _event({**chunk, "choices": choices})

    def _choice(self, choice: int, entry: dict[str, Any]) -> dict[str, Any]:
        entry = dict(entry)
        if isinstance(entry.get("text"), str):
            entry["text"] = self._feed(choice, "text", entry["text"])
        delta = entry.get("delta")
        if isinstance(delta, dict):
            delta = dict(delta)
            for name in _DELTA_TEXTS:
                if isinstance(delta.get(name), str):
                    delta[name] = self._feed(choice, ("delta", name), delta[name])
            if isinstance(delta.get("tool_calls"), list):
                delta["tool_calls"] = [self._call(choice, call) for call in delta["tool_calls"]]
            entry["delta"] = delta
        return entry

    def _call(self, choice: int, call: Any) -> Any:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("arguments"), str):
            return call
        index = call.get("index", 0)
        arguments = self._feed(choice, ("tool", index), function["arguments"])
        return {**call, "function": {**function, "arguments": arguments}}

    def end(self) -> bytes:
        """The tails still held (a stream that ended without finishing its choices)."""
        choices = sorted({choice for choice, _ in self._streams})
        return b"".join(tail for c in choices if (tail := self._tail_event(c)) is not None)


def _event(chunk: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(chunk, ensure_ascii=False).encode("utf-8") + b"\n\n"
