"""The identity benchmark script keeps running (its number is in docs/benchmarks.md)."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "bench_identity.py"


def test_bench_identity_runs(monkeypatch, capsys) -> None:
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), "50"])
    runpy.run_path(str(SCRIPT), run_name="__main__")
    assert "median" in capsys.readouterr().out
