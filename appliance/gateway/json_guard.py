"""Parsing a JSON request body within limits: pure, bytes in, values out.

Python's ``json`` accepts things that later hurt someone else: lone surrogates
(``"\\ud800"``) that no UTF-8 encoder can write (the audit record of that request then
failed its whole group-commit batch), nesting deep enough to raise ``RecursionError``,
``NaN`` and ``Infinity``, and integers of any size (which overflow float arithmetic and
int64 fields downstream). :func:`parse_json` refuses each of them with an
:class:`InvalidRequest` naming the field, so nothing past the body parser ever sees
such a value.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from appliance.audit.records import storable_text
from appliance.errors import InvalidRequest

__all__ = ["FLOAT_PARAMS", "INT64_MAX", "JsonLimits", "check_json", "parse_json"]

INT64_MAX = 2**63 - 1
# Beyond 2**53 an integer no longer round-trips through a double, so a number meant as
# a float (a sampling parameter) is refused there rather than silently rounded.
_FLOAT_EXACT = 2**53
FLOAT_PARAMS = frozenset(
    {
        "temperature",
        "top_p",
        "min_p",
        "presence_penalty",
        "frequency_penalty",
        "repetition_penalty",
        "length_penalty",
    }
)


@dataclass(frozen=True)
class JsonLimits:
    """What one request body may hold (``gateway.*`` settings)."""

    max_depth: int = 64
    max_array_items: int = 100_000
    max_string_chars: int = 1_048_576
    max_object_keys: int = 10_000


def _reject_constant(name: str) -> Any:
    raise InvalidRequest(f"request body is not valid JSON: {name} is not a JSON number")


def parse_json(body: bytes, limits: JsonLimits) -> Any:
    """Decode UTF-8, parse, then :func:`check_json`; any failure is InvalidRequest (400)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest("request body is not valid UTF-8") from exc
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except RecursionError as exc:
        raise InvalidRequest(
            f"request body is nested deeper than {limits.max_depth} levels"
        ) from exc
    except ValueError as exc:  # JSONDecodeError, and integers of over 4300 digits
        raise InvalidRequest("request body is not valid JSON") from exc
    check_json(value, limits)
    return value


def _path(parts: tuple[str | int, ...]) -> str | None:
    # A key may itself be the lone surrogate at fault: the path names it as U+FFFD, so
    # the error message can still be encoded.
    return storable_text(".".join(str(part) for part in parts)) or None


def _check_text(text: str, parts: tuple[str | int, ...], what: str) -> None:
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidRequest(
                f"{what} {_path(parts) or 'body'} is not valid Unicode (a lone surrogate)",
                param=_path(parts),
            ) from exc


def _check_number(value: int | float, parts: tuple[str | int, ...]) -> None:
    param = _path(parts)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidRequest(f"field {param} must be a finite number", param=param)
        return
    if abs(value) > INT64_MAX:
        raise InvalidRequest(f"field {param} is too large (at most 2^63-1)", param=param)
    if parts and parts[-1] in FLOAT_PARAMS and abs(value) > _FLOAT_EXACT:
        raise InvalidRequest(f"field {param} is too large for a number", param=param)


def _check_leaf(
    value: Any, parts: tuple[str | int, ...], key: str | int, limits: JsonLimits
) -> None:
    """A scalar under ``parts + (key,)``; the path is built only for an error."""
    if isinstance(value, str):
        if len(value) > limits.max_string_chars:
            raise _refuse(
                (*parts, key), "field", f"is longer than {limits.max_string_chars} characters"
            )
        if not value.isascii():
            _check_text(value, (*parts, key), "field")
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, float):
        if not math.isfinite(value):
            _check_number(value, (*parts, key))
    elif isinstance(value, int) and (abs(value) > _FLOAT_EXACT):
        _check_number(value, (*parts, key))


def _only_small_ints(items: list[Any]) -> bool:
    """Whether a list holds only integers within ±2^53 (token ids): checked in C, so a
    100,000-id prompt costs a few milliseconds, not a Python loop."""
    return (
        bool(items)
        and set(map(type, items)) == {int}
        and (-_FLOAT_EXACT <= min(items) and max(items) <= _FLOAT_EXACT)
    )


def _refuse(parts: tuple[str | int, ...], what: str, problem: str) -> InvalidRequest:
    """400 naming the field at ``parts`` (the body itself when empty)."""
    param = _path(parts)
    return InvalidRequest(f"{what} {param or 'body'} {problem}", param=param)


def check_json(value: Any, limits: JsonLimits) -> None:
    """Refuse a parsed value that breaks ``limits`` or holds text no encoder can write.

    Iterative (an explicit stack), so depth is bounded by ``limits.max_depth`` and never
    by the interpreter's recursion limit; paths are built only for the error message.
    """
    if not isinstance(value, dict | list):  # a bare scalar body (refused later anyway)
        if isinstance(value, str):
            _check_text(value, (), "field")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            _check_number(value, ())
        return
    # Only containers go on the stack; scalars are checked where they are met.
    stack: list[tuple[dict[str, Any] | list[Any], tuple[str | int, ...]]] = [(value, ())]
    while stack:
        item, parts = stack.pop()
        if len(parts) >= limits.max_depth:
            raise _refuse(parts, "field", f"is nested deeper than {limits.max_depth} levels")
        if isinstance(item, dict):
            if len(item) > limits.max_object_keys:
                raise _refuse(parts, "object", f"has more than {limits.max_object_keys} keys")
            for key, child in item.items():
                if not key.isascii():
                    _check_text(key, (*parts, key), "key")
                if isinstance(child, dict | list):
                    stack.append((child, (*parts, key)))
                else:
                    _check_leaf(child, parts, key, limits)
        else:
            if len(item) > limits.max_array_items:
                raise _refuse(parts, "array", f"has more than {limits.max_array_items} items")
            if _only_small_ints(item):
                continue
            for index, child in enumerate(item):
                if isinstance(child, dict | list):
                    stack.append((child, (*parts, index)))
                else:
                    _check_leaf(child, parts, index, limits)
