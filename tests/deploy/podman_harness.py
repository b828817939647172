"""Podman for the image tests: a private store under a temporary directory, the VM's
runtime settings from tests/deploy/containers.conf, and helpers to run Python inside
an image that has no shell."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

__all__ = ["Podman", "copy_distributions"]

CONTAINERS_CONF = Path(__file__).with_name("containers.conf")
VENV_PYTHON = "/opt/appliance/venv/bin/python"


@dataclass(frozen=True)
class Podman:
    root: Path

    def command(self, *args: str) -> list[str]:
        return [
            "podman", "--root", str(self.root / "storage"), "--runroot", str(self.root / "run"),
            *args,
        ]  # fmt: skip

    def run(
        self, *args: str, check: bool = True, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            self.command(*args),
            env={**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)},
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        if check and done.returncode != 0:
            raise AssertionError(
                f"podman {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
            )
        return done

    def python(
        self, container: str, code: str, *, env: Sequence[str] = (), check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Python inside a running container (the gateway image has no shell)."""
        env_args = [arg for item in env for arg in ("--env", item)]
        return self.run("exec", *env_args, container, VENV_PYTHON, "-c", code, check=check)

    def logs(self, container: str) -> str:
        done = self.run("logs", container, check=False)
        return done.stdout + done.stderr

    def running(self, container: str) -> bool:
        done = self.run("inspect", container, "--format", "{{.State.Running}}", check=False)
        return done.stdout.strip() == "true"

    def wait_until(
        self, container: str, code: str, *, timeout_s: float, watch: Sequence[str] = ()
    ) -> float:
        """Run ``code`` in ``container`` until it exits 0; fail early when a watched
        container stops. Returns the seconds waited."""
        started = time.monotonic()
        while True:
            for name in (container, *watch):
                if not self.running(name):
                    raise AssertionError(f"{name} stopped:\n{self.logs(name)[-6000:]}")
            if self.python(container, code, check=False).returncode == 0:
                return time.monotonic() - started
            if time.monotonic() - started > timeout_s:
                logs = "\n".join(f"--- {n}\n{self.logs(n)[-4000:]}" for n in (container, *watch))
                raise AssertionError(f"not ready after {timeout_s:.0f} s:\n{logs}")
            time.sleep(5)

    def reset(self) -> None:
        self.run("system", "reset", "--force", check=False, timeout=300)


def copy_distributions(names: Sequence[str], out: Path) -> list[str]:
    """Copy installed distributions and their requirement closure (markers evaluated,
    no extras) from this interpreter's environment into ``out``: a read-only mount
    that a container appends to its sys.path."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        dist = importlib.metadata.distribution(name)
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
        for file in dist.files or []:
            source = Path(str(dist.locate_file(file)))
            if ".." in file.parts or "__pycache__" in file.parts:
                continue  # scripts outside site-packages, caches
            if source.is_file():
                target = out / file
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
    return sorted(seen)
