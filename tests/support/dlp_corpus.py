"""The DLP corpus (tests/vectors/egress/dlp_corpus.json, issue #17): chat bodies with
planted findings, their slots filled from the detector vectors, and the ways a planted
value could show up in bytes that left (raw, JSON-escaped, respaced, in part).

Pure apart from reading the vector files.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from appliance.egress import load_dictionary

__all__ = [
    "DICTIONARIES",
    "FRAGMENT",
    "Planted",
    "Prompt",
    "last_user_text",
    "leaked_forms",
    "load_corpus",
    "strings_of",
    "value_pools",
]

VECTORS = Path(__file__).parents[1] / "vectors" / "egress"
DICTIONARIES = VECTORS / "dictionaries"
SLOT = re.compile(r"\{([a-z_]+(?:\.[a-z_]+)?):([0-9]+)(?:\|([a-z]+))?\}")
# A slot's optional |space: the value printed with typeset spaces between its groups.
_TYPESET = {"nbsp": "\u00a0", "nnbsp": "\u202f", "thin": "\u2009"}
# A leak of part of a value (a detector that stopped short) still shows this many
# consecutive characters of it; shorter values are looked for whole.
FRAGMENT = 8
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Planted:
    detector: str
    value: str


@dataclass(frozen=True)
class Prompt:
    """One corpus entry: the body to send (without ``model``) and every slot it filled,
    in order, repeats included."""

    name: str
    body: dict[str, Any]
    planted: tuple[Planted, ...]

    @property
    def detector_counts(self) -> dict[str, int]:
        """Findings the scan must report, by detector: one per planted occurrence."""
        return dict(Counter(p.detector for p in self.planted))

    @property
    def values(self) -> frozenset[str]:
        return frozenset(p.value for p in self.planted)


def _read(name: str) -> Any:
    return json.loads((VECTORS / name).read_text(encoding="utf-8"))


@cache
def value_pools() -> dict[str, tuple[str, ...]]:
    """Detector name -> the valid values a slot may draw from."""
    pools: dict[str, tuple[str, ...]] = {}
    pools["iban"] = tuple(v["value"] for v in _read("iban.json")["valid"])
    cards = _read("cards.json")
    pools["payment_card"] = tuple(v["value"] for v in cards["formatted"] + cards["valid"])
    for name in ("national_ids.json", "secrets.json"):
        for detector, spec in _read(name).items():
            if isinstance(spec, dict):
                pools[detector] = tuple(spec["valid"])
    for detector, values in _read("dlp_corpus.json")["values"].items():
        pools[detector] = tuple(values)
    for path in sorted(DICTIONARIES.glob("*.txt")):
        pools[f"dictionary.{path.stem}"] = load_dictionary(path).terms
    return pools


def _render(value: Any, planted: list[Planted]) -> Any:
    if isinstance(value, str):

        def fill(slot: re.Match[str]) -> str:
            detector, index, space = slot.group(1), int(slot.group(2)), slot.group(3)
            chosen = value_pools()[detector][index]
            if space is not None:
                if " " not in chosen:  # the slot would test nothing it says it does
                    raise ValueError(f"{slot.group()}: {chosen!r} has no space to replace")
                chosen = chosen.replace(" ", _TYPESET[space])
            planted.append(Planted(detector, chosen))
            return chosen

        return SLOT.sub(fill, value)
    if isinstance(value, dict):
        return {_render(key, planted): _render(item, planted) for key, item in value.items()}
    if isinstance(value, list):
        return [_render(item, planted) for item in value]
    return value


def load_corpus(section: str = "prompts") -> list[Prompt]:
    """The prompts of ``section``: ``prompts``, or ``known_gaps`` (what the scan is
    known to miss, each with its reason in ``gap``)."""
    prompts = []
    for entry in _read("dlp_corpus.json")[section]:
        planted: list[Planted] = []
        body = _render(entry["body"], planted)
        prompts.append(Prompt(entry["name"], body, tuple(planted)))
    return prompts


def strings_of(value: Any) -> list[str]:
    """Every string of a JSON value, object keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for key, item in value.items() for s in (str(key), *strings_of(item))]
    if isinstance(value, list):
        return [s for item in value for s in strings_of(item)]
    return []


def last_user_text(body: dict[str, Any]) -> str:
    """What the fake provider's ``gpt-echo`` answers: the last user message's text
    (text parts joined by a space)."""
    for message in reversed(body["messages"]):
        if message["role"] != "user":
            continue
        content = message["content"]
        if isinstance(content, str):
            return content
        return " ".join(p["text"] for p in content if p.get("type") == "text")
    return ""


def _encodings(text: str) -> set[bytes]:
    """``text`` as it could appear in JSON bytes: UTF-8, ``\\uXXXX`` escapes (either
    case), ``\\/``."""
    escaped = json.dumps(text)[1:-1]
    forms = {
        text.encode(),
        escaped.encode(),
        escaped.upper().encode(),  # upper-case hex digits (and letters: compared lowered)
        json.dumps(text, ensure_ascii=False)[1:-1].encode(),
        escaped.replace("/", "\\/").encode(),
    }
    return {form.lower() for form in forms}


def leaked_forms(value: str, raw: bytes, texts: str) -> list[str]:
    """How ``value`` shows in what left: ``raw`` bytes, and ``texts`` (the decoded
    strings of those bytes). Case is ignored; so is whitespace for the fragment check
    (an IBAN respaced or cut by a line break still counts)."""
    found: list[str] = []
    haystack = raw.lower()
    for variant in {value, _SPACE.sub("", value)}:
        found += [f"bytes {form!r}" for form in _encodings(variant) if form in haystack]
    compact_value = _SPACE.sub("", value).lower()
    compact_texts = _SPACE.sub("", texts).lower()
    size = min(FRAGMENT, len(compact_value))
    for start in range(len(compact_value) - size + 1):
        fragment = compact_value[start : start + size]
        if fragment in compact_texts:
            found.append(f"fragment {fragment!r}")
    return found
