"""Site dictionaries: code names, customer lists, project names a site must not let out.

The file format (parsed by :func:`parse_terms`, read by
:func:`appliance.egress.sitefiles.load_dictionary`): UTF-8, one term per line, blank
lines and lines starting with ``#`` ignored, surrounding whitespace stripped. A term
matches case-insensitively as a whole word: ``Falcon`` matches ``falcon's`` and
``FALCON`` but not ``Falconry`` or ``falcon_v2``. Multi-word terms match with the same
spacing as written.

Japanese, Chinese and Korean put no space between words, so "whole word" means nothing
there: an edge of a term that is a character of those scripts (see
:mod:`~appliance.egress.detectors.boundaries`) matches anywhere (``東京精密`` in
``東京精密の担当者``, ``青龍`` in ``青龍計画``), and such a character next to a Latin term
is a boundary (``Falcon`` in ``プロジェクトFalconの``).

Matching indexes the terms by their key (first word, or first character when the term
starts in a script without spaces) and then by length, so a scan costs one pass over
the keys of the text plus one set lookup per distinct term length sharing that key,
whatever the number of terms.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from appliance.egress.detectors.base import Span
from appliance.egress.detectors.boundaries import UNSPACED, WORD, is_word_char
from appliance.egress.levels import Classification

__all__ = ["SiteDictionary", "parse_terms"]

_WORD = re.compile(r"\w+")
# Where a term may start: a word of a spaced script, or any one character of the others.
_KEY = re.compile(f"{WORD}+|[{UNSPACED}]")


def parse_terms(text: str) -> tuple[str, ...]:
    """Terms of a dictionary file's text, in file order, without duplicates (compared
    case-insensitively). A term that does not start with a letter or digit cannot match
    as a whole word: ``ValueError`` naming its line."""
    terms: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        term = raw.strip()
        if not term or term.startswith("#"):
            continue
        if _WORD.match(term) is None:
            raise ValueError(f"line {number}: a term must start with a letter or digit")
        terms.setdefault(term.lower(), term)
    return tuple(terms.values())


_Index = Mapping[str, tuple[tuple[int, frozenset[str]], ...]]


def _index(terms: Iterable[str]) -> _Index:
    """Key (lower case) -> (length, terms of that length), longest first."""
    by_first: dict[str, dict[int, set[str]]] = {}
    for term in terms:
        first = _KEY.match(term)
        if first is None or _WORD.match(term) is None:
            raise ValueError(f"term {term!r} must start with a letter or digit")
        lowered = term.lower()
        by_length = by_first.setdefault(first.group().lower(), {})
        by_length.setdefault(len(lowered), set()).add(lowered)
    # Longest first, so "Acme Corp Ltd" wins over "Acme" at the same position.
    return MappingProxyType(
        {
            key: tuple((n, frozenset(group)) for n, group in sorted(lengths.items(), reverse=True))
            for key, lengths in by_first.items()
        }
    )


@dataclass(frozen=True, slots=True)
class SiteDictionary:
    """A named list of terms with its own level and placeholder label.

    ``name`` is the detector name in configuration and audit counts; by convention
    ``dictionary.<list>`` (``dictionary.codenames``).
    """

    name: str
    terms: tuple[str, ...] = field(repr=False)
    level: Classification = Classification.CONFIDENTIAL
    label: str = "TERM"
    _by_key: _Index = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_key", _index(self.terms))

    @classmethod
    def parse(
        cls,
        text: str,
        *,
        name: str,
        level: Classification = Classification.CONFIDENTIAL,
        label: str = "TERM",
    ) -> SiteDictionary:
        """A dictionary from the text of a dictionary file (see :func:`parse_terms`)."""
        return cls(name=name, terms=parse_terms(text), level=level, label=label)

    def find(self, text: str) -> Iterator[Span]:
        index = self._by_key
        if not index:
            return
        # A key of the text starts where a term may: not inside a Latin word.
        for key in _KEY.finditer(text):
            candidates = index.get(key.group().lower())
            if candidates is None:
                continue
            start = key.start()
            for length, group in candidates:
                end = start + length
                if text[start:end].lower() not in group:
                    continue
                # Only a term ending in a letter or digit of a spaced script can end
                # inside a longer word; one ending in kanji or kana ends anywhere.
                if end < len(text) and is_word_char(text[end - 1]) and is_word_char(text[end]):
                    continue
                yield start, end
                break
