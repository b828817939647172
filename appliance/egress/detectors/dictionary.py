"""Site dictionaries: code names, customer lists, project names a site must not let out.

The file format (parsed by :func:`parse_terms`, read by
:func:`appliance.egress.sitefiles.load_dictionary`): UTF-8, one term per line, blank
lines and lines starting with ``#`` ignored, surrounding whitespace stripped. A term
matches case-insensitively as a whole word: ``Falcon`` matches ``falcon's`` and
``FALCON`` but not ``Falconry`` or ``falcon_v2``. Multi-word terms match with the same
spacing as written.

Matching indexes the terms by their first word and then by length, so a scan costs one
pass over the words of the text plus one set lookup per distinct term length sharing
that first word, whatever the number of terms.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from appliance.egress.detectors.base import Span
from appliance.egress.levels import Classification

__all__ = ["SiteDictionary", "parse_terms"]

_WORD = re.compile(r"\w+")


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
    """First word (lower case) -> (length, terms of that length), longest first."""
    by_first: dict[str, dict[int, set[str]]] = {}
    for term in terms:
        first = _WORD.match(term)
        if first is None:
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
    _by_first_word: _Index = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_first_word", _index(self.terms))

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
        index = self._by_first_word
        if not index:
            return
        for word in _WORD.finditer(text):
            candidates = index.get(word.group().lower())
            if candidates is None:
                continue
            start = word.start()
            for length, group in candidates:
                end = start + length
                if text[start:end].lower() not in group:
                    continue
                if end < len(text) and _is_word_char(text[end - 1]) and _is_word_char(text[end]):
                    continue
                yield start, end
                break


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_"
