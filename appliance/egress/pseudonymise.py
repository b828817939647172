"""Replacing findings with placeholders, for one text or an OpenAI chat message list.

Within one request the same original always gets the same placeholder (``⟦EMAIL_1⟧``
each time ``jane@example.com`` appears, in any message), numbered per label in order of
first appearance. Findings below ``threshold`` (default ``internal``) are counted but
left in place. Placeholder-shaped text already in the input is reserved, never issued,
so re-identification cannot confuse it with a value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from appliance.egress.findings import ScanResult, ScanSummary
from appliance.egress.levels import Classification
from appliance.egress.placeholders import TOKEN, PlaceholderMap, placeholder
from appliance.egress.scanner import Scanner

__all__ = [
    "Pseudonymised",
    "Pseudonymiser",
    "message_texts",
    "pseudonymise_messages",
    "pseudonymise_text",
]

T = TypeVar("T")

Message = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Pseudonymised(Generic[T]):
    """The rewritten ``value``, the map to undo it, and the scan's summary (all findings,
    replaced or not)."""

    value: T
    mapping: PlaceholderMap
    summary: ScanSummary


class Pseudonymiser:
    """The state of one request: originals seen so far and their placeholders.

    Not thread-safe and not meant to be shared between requests; the :class:`Scanner`
    it uses is.
    """

    def __init__(
        self, scanner: Scanner, *, threshold: Classification = Classification.INTERNAL
    ) -> None:
        self._scanner = scanner
        self._threshold = threshold
        self._by_original: dict[str, str] = {}
        self._originals: dict[str, str] = {}
        self._last_number: dict[str, int] = {}
        self._reserved: set[str] = set()
        self._summary = ScanSummary()

    @property
    def mapping(self) -> PlaceholderMap:
        return PlaceholderMap(self._originals)

    @property
    def summary(self) -> ScanSummary:
        return self._summary

    def reserve(self, texts: Iterable[str]) -> None:
        """Never issue a placeholder that already occurs literally in ``texts``."""
        for text in texts:
            self._reserved.update(TOKEN.findall(text))

    def text(self, text: str, result: ScanResult | None = None) -> str:
        """``text`` with its findings at or above the threshold replaced. Pass the
        ``result`` of an earlier ``scanner.scan(text)`` to avoid scanning twice."""
        self.reserve((text,))
        if result is None:
            result = self._scanner.scan(text)
        self._summary = self._summary.merge(result.summary())
        pieces: list[str] = []
        position = 0
        for finding in result.at_least(self._threshold):
            pieces.append(text[position : finding.start])
            pieces.append(self._placeholder_for(finding.label, finding.text))
            position = finding.end
        pieces.append(text[position:])
        return "".join(pieces)

    def messages(self, messages: Sequence[Message]) -> list[dict[str, Any]]:
        """New chat messages with every text pseudonymised: string ``content`` and the
        ``{"type": "text", "text": ...}`` parts of list content. Other parts (images,
        audio), other fields and the input objects are left untouched."""
        self.reserve(message_texts(messages))
        return [self._message(message) for message in messages]

    def _message(self, message: Message) -> dict[str, Any]:
        rewritten = dict(message)
        content = message.get("content")
        if isinstance(content, str):
            rewritten["content"] = self.text(content)
        elif isinstance(content, list):
            rewritten["content"] = [self._part(part) for part in content]
        return rewritten

    def _part(self, part: Any) -> Any:
        if _is_text_part(part):
            return {**part, "text": self.text(part["text"])}
        return part

    def _placeholder_for(self, label: str, original: str) -> str:
        token = self._by_original.get(original)
        if token is not None:
            return token
        number = self._last_number.get(label, 0)
        while True:
            number += 1
            token = placeholder(label, number)
            if token not in self._reserved:
                break
        self._last_number[label] = number
        self._by_original[original] = token
        self._originals[token] = original
        return token


def _is_text_part(part: Any) -> bool:
    return (
        isinstance(part, Mapping)
        and part.get("type") == "text"
        and isinstance(part.get("text"), str)
    )


def message_texts(messages: Sequence[Message]) -> list[str]:
    """The texts of chat messages that the pseudonymiser rewrites, in order."""
    texts: list[str] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(part["text"] for part in content if _is_text_part(part))
    return texts


def pseudonymise_text(
    text: str, scanner: Scanner, *, threshold: Classification = Classification.INTERNAL
) -> Pseudonymised[str]:
    """One text, its own request."""
    pseudonymiser = Pseudonymiser(scanner, threshold=threshold)
    value = pseudonymiser.text(text)
    return Pseudonymised(value, pseudonymiser.mapping, pseudonymiser.summary)


def pseudonymise_messages(
    messages: Sequence[Message],
    scanner: Scanner,
    *,
    threshold: Classification = Classification.INTERNAL,
) -> Pseudonymised[list[dict[str, Any]]]:
    """An OpenAI chat ``messages`` list, one request."""
    pseudonymiser = Pseudonymiser(scanner, threshold=threshold)
    value = pseudonymiser.messages(messages)
    return Pseudonymised(value, pseudonymiser.mapping, pseudonymiser.summary)
