"""The gateway bench's verdicts and table (bench/three_way.py): what counts as a
sustained rate, what a proxy adds to the direct path, and a three-way table that
falls back to two columns when LiteLLM did not run."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[3] / "bench"
if str(BENCH) not in sys.path:  # the bench scripts import each other the same way
    sys.path.insert(0, str(BENCH))

from three_way import GOALS, added, markdown_table, sustained  # noqa: E402

LABELS = {"direct": "direct (fake engine)", "gateway": "appliance gateway",
          "litellm": "LiteLLM 1.110.2"}  # fmt: skip


def phase(p50: float, p99: float, *, rps: float = 200.0, errors: int = 0,
          ttft: float | None = None) -> dict[str, object]:  # fmt: skip
    return {"p50_ms": p50, "p99_ms": p99, "achieved_rps": rps, "errors": errors,
            "ttft_p50_ms": ttft}  # fmt: skip


def results() -> dict[str, object]:
    out: dict[str, object] = {}
    for name, base in (("direct", 0.5), ("gateway", 6.0), ("litellm", 16.0)):
        out[f"sequential_{name}"] = phase(base, base * 2)
        out[f"stream_{name}"] = phase(base, base * 2, ttft=base + 0.25)
        out[f"rate200_{name}"] = phase(base, base * 3, rps=200 if name != "litellm" else 61.5,
                                       errors=0 if name != "litellm" else 7)  # fmt: skip
    out.update(gateway_cpu_ms_per_request=5.1, litellm_cpu_ms_per_request=13.2,
               direct_max_sustained_rps=600, gateway_max_sustained_rps=200,
               litellm_max_sustained_rps=50)  # fmt: skip
    return out


def test_sustained_needs_no_errors_the_rate_and_the_p99() -> None:
    assert sustained(phase(1, 99, rps=97.0), 100, 100.0)
    assert not sustained(phase(1, 99, rps=96.9), 100, 100.0)  # under 97 % of offered
    assert not sustained(phase(1, 100.5, rps=100), 100, 100.0)  # p99 over the limit
    assert not sustained(phase(1, 5, rps=100, errors=1), 100, 100.0)
    assert not sustained(phase(1, float("nan"), rps=100), 100, 100.0)  # nothing completed


def test_added_is_the_difference_to_direct_or_none() -> None:
    data = results()
    assert added(data, "sequential", "gateway", "p50_ms") == 5.5
    assert added(data, "stream", "litellm", "ttft_p50_ms") == 15.5
    assert added(data, "sequential", "absent", "p50_ms") is None
    data["sequential_gateway"] = phase(float("nan"), float("nan"))
    assert added(data, "sequential", "gateway", "p50_ms") is None


def test_three_way_table_has_a_column_per_target_and_the_goals() -> None:
    text = markdown_table(results(), 200, 100.0, ["direct", "gateway", "litellm"], LABELS)
    lines = text.splitlines()
    assert lines[0] == ("| what | direct (fake engine) | appliance gateway | LiteLLM 1.110.2 "
                        "| goal (issue 15) |")  # fmt: skip
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1:] for line in lines[2:] if
            line.startswith("| ")}  # fmt: skip
    assert rows["sequential, p50"] == ["0.50 ms", "+5.50 ms", "+15.50 ms", " |"]
    assert rows["streaming, time to first byte p50"][:3] == ["0.75 ms", "+5.50 ms", "+15.50 ms"]
    assert rows["fixed 200 req/s, achieved"][2] == "61.5 req/s (7 errors)"
    assert rows["fixed 200 req/s, p99"][3].startswith(GOALS["rate_p99"])
    assert rows["CPU per request (process and its children)"][:3] == ["—", "5.10 ms", "13.20 ms"]
    sustained_row = next(v for k, v in rows.items() if k.startswith("highest sustained"))
    assert sustained_row[:3] == ["600 req/s", "200 req/s", "50 req/s"]


def test_a_target_that_held_no_rate_shows_the_lowest_offered() -> None:
    data = results()
    data["litellm_max_sustained_rps"] = 0
    data["litellm_steps"] = [{"offered_rps": 25, "sustained": False}]
    text = markdown_table(data, 200, 100.0, ["direct", "gateway", "litellm"], LABELS)
    row = next(line for line in text.splitlines() if line.startswith("| highest sustained"))
    assert row.split(" | ")[1:4] == ["600 req/s", "200 req/s", "< 25 req/s"]


def test_without_litellm_the_table_has_two_columns() -> None:
    text = markdown_table(results(), 200, 100.0, ["direct", "gateway"], LABELS)
    assert "LiteLLM" not in text
    assert all(line.count("|") == 5 for line in text.splitlines() if line.startswith("|"))
