"""Running the build tools: progress lines, and a failure as one message with the
tool's last output lines."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

__all__ = ["run", "step"]


def step(message: str) -> None:
    print(f"\n==> {message}", flush=True)


def run(args: Sequence[str | Path], *, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    output = done.stdout.decode(errors="replace")
    if done.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-25:])
        raise SystemExit(f"{Path(str(args[0])).name} failed ({done.returncode}):\n{tail}")
    return output
