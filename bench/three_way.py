"""The gateway benchmark's verdicts and its table: the fake engine called directly, the
appliance gateway and LiteLLM's proxy side by side, with issue 15's goals. Pure: it
reads the results dictionary bench/gateway_bench.py builds and returns text."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["GOALS", "added", "markdown_table", "sustained"]

# Issue 15's goals, per row of the table; the proxies' cells are compared against them.
GOALS = {
    "stream": "≤ +1 ms",
    "rate_achieved": "the offered rate",
    "rate_p50": "≤ +1 ms",
    "rate_p99": "≤ +3 ms",
    "cpu": "≤ 1.5 ms",
    "sustained": "≥ 500 req/s",
}


def sustained(
    result: Mapping[str, Any], offered: float, p99_limit_ms: float, share: float = 0.97
) -> bool:
    """A rate counts as sustained when every request succeeded, at least `share` of the
    offered rate completed, and the p99 stayed within the limit."""
    p99 = float(result["p99_ms"])
    return (
        result["errors"] == 0
        and result["achieved_rps"] >= share * offered
        and not math.isnan(p99)
        and p99 <= p99_limit_ms
    )


def added(results: Mapping[str, Any], phase: str, target: str, key: str) -> float | None:
    """What `target` adds to the direct path for one measure, in ms; None if either side
    has no number (a phase with no completed request)."""
    ours = results.get(f"{phase}_{target}", {}).get(key)
    base = results.get(f"{phase}_direct", {}).get(key)
    if ours is None or base is None or math.isnan(ours) or math.isnan(base):
        return None
    return round(float(ours) - float(base), 3)


def _ms(value: float | None, *, sign: bool = False) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:+.2f} ms" if sign else f"{value:.2f} ms"


def _latency_cell(results: Mapping[str, Any], phase: str, target: str, key: str) -> str:
    # The direct column carries the latency itself; a proxy's column what it adds to it.
    if target == "direct":
        return _ms(results.get(f"{phase}_direct", {}).get(key))
    return _ms(added(results, phase, target, key), sign=True)


def _achieved_cell(results: Mapping[str, Any], phase: str, target: str) -> str:
    result = results.get(f"{phase}_{target}")
    if result is None:
        return "n/a"
    cell = f"{result['achieved_rps']} req/s"
    return f"{cell} ({result['errors']} errors)" if result["errors"] else cell


def _cpu_cell(results: Mapping[str, Any], target: str) -> str:
    value = results.get(f"{target}_cpu_ms_per_request")
    return "—" if value is None else _ms(value)


def _sustained_cell(results: Mapping[str, Any], target: str) -> str:
    value = results.get(f"{target}_max_sustained_rps")
    steps = results.get(f"{target}_steps") or []
    if value is None:
        return "n/a"
    if value == 0 and steps:  # not even the lowest rate offered held
        return f"< {steps[0]['offered_rps']} req/s"
    return f"{value} req/s"


def markdown_table(
    results: Mapping[str, Any],
    rate: int,
    p99_limit_ms: float,
    targets: Sequence[str],
    labels: Mapping[str, str],
) -> str:
    """One row per measure, one column per target (`direct` first), then the goal."""
    rows: list[tuple[str, list[str], str]] = []

    def latency(what: str, phase: str, key: str, goal: str = "") -> None:
        rows.append((what, [_latency_cell(results, phase, t, key) for t in targets], goal))

    latency("sequential, p50", "sequential", "p50_ms")
    latency("sequential, p99", "sequential", "p99_ms")
    latency("streaming, time to first byte p50", "stream", "ttft_p50_ms", GOALS["stream"])
    rate_phase = f"rate{rate}"
    rows.append((
        f"fixed {rate} req/s, achieved",
        [_achieved_cell(results, rate_phase, t) for t in targets],
        GOALS["rate_achieved"],
    ))  # fmt: skip
    latency(f"fixed {rate} req/s, p50", rate_phase, "p50_ms", GOALS["rate_p50"])
    latency(f"fixed {rate} req/s, p99", rate_phase, "p99_ms", GOALS["rate_p99"])
    rows.append((
        "CPU per request (process and its children)",
        [_cpu_cell(results, t) for t in targets],
        GOALS["cpu"],
    ))  # fmt: skip
    rows.append((
        f"highest sustained rate (≥ 97 % of offered, p99 ≤ {p99_limit_ms:g} ms, no errors)",
        [_sustained_cell(results, t) for t in targets],
        GOALS["sustained"],
    ))  # fmt: skip

    header = ["what", *(labels.get(t, t) for t in targets), "goal (issue 15)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join([what, *cells, goal]) + " |" for what, cells, goal in rows]
    note = "direct: the latency itself; the proxies: what they add to it (same run)."
    return "\n".join([*lines, "", note])
