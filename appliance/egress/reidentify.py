"""Putting the originals back into a model's answer, whole or streamed chunk by chunk.

The streaming re-identifier emits text as soon as no placeholder can straddle the
emitted end: it holds back only a tail that starts with ``⟦`` and is a proper prefix of
a known placeholder, and flushes that tail at the end of the stream. For every split of
an answer into chunks, the concatenated output equals :func:`reidentify` of the whole
answer (a Hypothesis property in the tests). Why that holds: a placeholder token has no
``⟦`` inside, so a match that crosses a cut must start at the last ``⟦`` before it;
cutting just before that ``⟦``, or where the text after it cannot become a known
placeholder, changes no replacement.
"""

from __future__ import annotations

import re

from appliance.egress.placeholders import OPEN, TOKEN, PlaceholderMap

__all__ = ["StreamingReidentifier", "reidentify"]


def reidentify(text: str, mapping: PlaceholderMap) -> str:
    """``text`` with every known placeholder replaced by its original; unknown or
    altered tokens are left as they are."""
    if not mapping:
        return text
    originals = mapping.originals

    def original(match: re.Match[str]) -> str:
        return originals.get(match.group(), match.group())

    return TOKEN.sub(original, text)


class StreamingReidentifier:
    """Feed answer chunks in order with :meth:`feed`; call :meth:`flush` once at the end.

    One instance per streamed choice (``choices[i]`` of an SSE stream are separate texts).
    """

    def __init__(self, mapping: PlaceholderMap) -> None:
        self._mapping = mapping
        self._prefixes = frozenset(token[:cut] for token in mapping for cut in range(1, len(token)))
        self._pending = ""

    @property
    def pending(self) -> str:
        """The text held back (a possible placeholder prefix), for tests and debugging."""
        return self._pending

    def feed(self, chunk: str) -> str:
        """The re-identified text that is safe to emit after ``chunk``."""
        text = self._pending + chunk
        cut = text.rfind(OPEN)
        if cut != -1 and text[cut:] in self._prefixes:
            self._pending = text[cut:]
            return reidentify(text[:cut], self._mapping)
        self._pending = ""
        return reidentify(text, self._mapping)

    def flush(self) -> str:
        """The held-back tail, as is (the stream ended inside no complete placeholder)."""
        tail, self._pending = self._pending, ""
        return reidentify(tail, self._mapping)
