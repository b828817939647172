"""Writing a benchmark's results: bench/results/<name>-<UTC>[-quick].json, with the
machine it ran on, so docs/benchmarks.md can cite a file for every number."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def write_report(
    name: str, benchmark: str, settings: dict[str, Any], results: dict[str, Any], *,
    quick: bool = False,
) -> Path:  # fmt: skip
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    report = {
        "benchmark": benchmark,
        "when": stamp,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_avg_at_end": os.getloadavg(),
        },
        "settings": settings,
        "results": results,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}-{stamp}{'-quick' if quick else ''}.json"
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return path
