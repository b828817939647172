"""Usage per day from audit records' clear-text metadata, for the console's charts:
requests and tokens by team, by model and by adapter, and denials. Pure: the caller
reads the rows and picks the days."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["NO_ADAPTER", "NO_MODEL", "NO_TEAM", "UsageRow", "adapter_of", "usage_series"]

NO_TEAM = "(no team)"
NO_MODEL = "(none)"
NO_ADAPTER = "(no adapter)"


@dataclass(frozen=True)
class UsageRow:
    """One completion (or denial) record: its day (ISO date) and what it says."""

    day: str
    denied: bool
    team: str | None = None
    model: str | None = None
    tokens: int = 0
    adapter: str | None = None


def adapter_of(model: str | None, params: Mapping[str, Any] | None) -> str | None:
    """The adapter a record's request ran under, as callers name it
    (``<model>:<adapter>``, the record's ``model``), from ``params.adapter``; None for
    a base model."""
    name = (params or {}).get("adapter")
    if not isinstance(name, str) or not name:
        return None
    if model and model.endswith(f":{name}"):
        return model
    base = (params or {}).get("adapter_base")
    return f"{base}:{name}" if isinstance(base, str) and base else name


def usage_series(rows: Iterable[UsageRow], days: Sequence[str]) -> dict[str, Any]:
    """Per-day series over ``days``: ``requests_by_*`` / ``tokens_by_*`` for team,
    model and adapter (requests without one under ``(no adapter)``, so every split sums
    to the same totals), and ``denials``."""
    tables: dict[str, dict[str, dict[str, list[int]]]] = {
        split: defaultdict(lambda: defaultdict(lambda: [0, 0]))
        for split in ("team", "model", "adapter")
    }
    denials: dict[str, int] = defaultdict(int)
    for row in rows:
        if row.denied:
            denials[row.day] += 1
            continue
        keys = {
            "team": row.team or NO_TEAM,
            "model": row.model or NO_MODEL,
            "adapter": row.adapter or NO_ADAPTER,
        }
        for split, key in keys.items():
            cell = tables[split][key][row.day]
            cell[0] += 1
            cell[1] += row.tokens

    def series(table: dict[str, dict[str, list[int]]], slot: int) -> dict[str, list[int]]:
        return {k: [v[d][slot] if d in v else 0 for d in days] for k, v in sorted(table.items())}

    answer: dict[str, Any] = {"days": list(days)}
    for split, table in tables.items():
        answer[f"requests_by_{split}"] = series(table, 0)
        answer[f"tokens_by_{split}"] = series(table, 1)
    answer["denials"] = [denials.get(d, 0) for d in days]
    return answer
