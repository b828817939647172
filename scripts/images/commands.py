"""Running the build tools: progress lines, and a failure as one message with the
tool's last output lines."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

__all__ = ["CommandFailed", "run", "step"]


class CommandFailed(SystemExit):
    """A build tool exited non-zero: the message names it and quotes its last lines;
    ``output`` keeps all of it (rootfs.py reads apt's errors from it)."""

    def __init__(self, message: str, *, output: str) -> None:
        super().__init__(message)
        self.output = output


def step(message: str) -> None:
    print(f"\n==> {message}", flush=True)


def run(args: Sequence[str | Path], *, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(a) for a in args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    output = done.stdout.decode(errors="replace")
    if done.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-25:])
        name = Path(str(args[0])).name
        raise CommandFailed(f"{name} failed ({done.returncode}):\n{tail}", output=output)
    return output
