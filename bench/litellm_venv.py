"""LiteLLM's proxy in its own venv (bench/.litellm-venv, ignored by git), made once and
reused: the comparison in bench/gateway_bench.py must never put LiteLLM into the
product's venv.

The install asks pip for `litellm[proxy]==<version>` first. When PyPI lacks a pinned
piece of that extra (1.110.2 pins `litellm-proxy==1.110.2`, which PyPI does not carry,
and companion builds PyPI has only in older releases), it installs `litellm==<version>`
and the extra's requirements one by one: a `==` pin pip cannot find is relaxed to any
release, a requirement with no release at all is left out. Every such change is kept in
the venv's stamp and printed with the results, so the table says what ran.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

__all__ = [
    "LITELLM_VERSION",
    "VENV",
    "Install",
    "LiteLLMUnavailable",
    "ensure_litellm",
    "extra_requirements",
    "missing_requirement",
    "relax",
]

LITELLM_VERSION = "1.110.2"
VENV = Path(__file__).resolve().parent / ".litellm-venv"
STAMP = "bench-install.json"
PIP_TIMEOUT_S = 1800  # one resolution of ~150 packages from PyPI, downloads included
MAX_RETRIES = 8


class LiteLLMUnavailable(RuntimeError):
    """LiteLLM could not be installed; the message says why (the bench carries on)."""


@dataclass(frozen=True)
class Install:
    venv: Path
    version: str
    requested: str
    deviations: tuple[str, ...]

    @property
    def executable(self) -> Path:
        return self.venv / "bin" / "litellm"


def extra_requirements(requires: Iterable[str], extra: str) -> list[str]:
    """The requirements that `extra` adds, as pip arguments without their markers, for
    this interpreter (a marker's Python-version part is evaluated here)."""
    out: list[str] = []
    for line in requires:
        req = Requirement(line)
        if req.marker is None or not req.marker.evaluate({"extra": extra}):
            continue
        if req.marker.evaluate({"extra": ""}):
            continue  # a base requirement, not the extra's
        extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
        out.append(f"{req.name}{extras}{req.specifier}")
    return out


def missing_requirement(pip_output: str) -> str | None:
    """The (canonical) name of the requirement pip found no distribution for, if any."""
    found = re.findall(r"No matching distribution found for ([A-Za-z0-9._-]+)", pip_output)
    return canonicalize_name(found[-1]) if found else None


def relax(
    requirements: Sequence[str], name: str, wanted: str | None = None
) -> tuple[list[str], str]:
    """Drop the `==` pin of `name`, or leave `name` out when it has no pin to drop (pip
    found no release at all). Returns the new list and a note saying what changed, naming
    the requirement as `wanted` (what was first asked for) when given."""
    out: list[str] = []
    note = ""
    for line in requirements:
        req = Requirement(line)
        if canonicalize_name(req.name) != canonicalize_name(name):
            out.append(line)
            continue
        pins = [spec for spec in req.specifier if spec.operator in ("==", "===")]
        if pins:
            out.append(req.name + (f"[{','.join(sorted(req.extras))}]" if req.extras else ""))
            note = f"{wanted or line}: not on PyPI; installed the newest release PyPI has"
        else:
            note = f"{wanted or line}: no release on PyPI at all; left out"
    if not note:
        raise ValueError(f"{name} is not among the requirements")
    return out, note


def _pip(venv: Path, args: Sequence[str], log: Path) -> tuple[bool, str]:
    # The bench runs in the product's venv: nothing of it may leak into this pip.
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    command = [str(venv / "bin" / "python"), "-m", "pip", "install", *args]
    try:
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=PIP_TIMEOUT_S
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return False, f"pip took over {PIP_TIMEOUT_S} s"
    with log.open("a") as out:
        out.write(f"$ {' '.join(command)}\n{done.stdout}{done.stderr}\nrc {done.returncode}\n")
    return done.returncode == 0, done.stdout + done.stderr


def _installed_requires(venv: Path) -> list[str]:
    script = "import importlib.metadata as m; print('\\n'.join(m.requires('litellm') or []))"
    done = subprocess.run(
        [str(venv / "bin" / "python"), "-c", script], capture_output=True, text=True, check=True
    )  # fmt: skip
    return [line for line in done.stdout.splitlines() if line.strip()]


def _install(venv: Path, version: str, say: Callable[[str], None]) -> Install:
    log = venv.parent / f"{venv.name}.log"
    requested = f"litellm[proxy]=={version}"
    say(f"installing {requested} into {venv} (once; pip log: {log})")
    ok, output = _pip(venv, [requested], log)
    if ok:
        return Install(venv, version, requested, ())
    missing = missing_requirement(output)
    say(f"{requested} cannot be installed from PyPI ({missing or output[-300:].strip()})")
    ok, output = _pip(venv, [f"litellm=={version}"], log)
    if not ok:
        raise LiteLLMUnavailable(f"litellm=={version} cannot be installed: {output[-500:]}")
    requirements = extra_requirements(_installed_requires(venv), "proxy")
    wanted: dict[str, str] = {
        canonicalize_name(Requirement(line).name): line for line in requirements
    }
    deviations: dict[str, str] = {}  # name -> what was done about it, the last word
    for _ in range(MAX_RETRIES):
        ok, output = _pip(venv, [f"litellm=={version}", *requirements], log)
        if ok:
            for note in deviations.values():
                say(f"  {note}")
            return Install(venv, version, requested, tuple(deviations.values()))
        name = missing_requirement(output)
        if name is None or name == "litellm":
            break
        requirements, deviations[name] = relax(requirements, name, wanted.get(name))
    raise LiteLLMUnavailable(
        f"the proxy extra of litellm=={version} cannot be installed "
        f"({'; '.join(deviations.values()) or 'see the log'}): {output[-500:]}"
    )


def ensure_litellm(
    venv: Path = VENV, version: str = LITELLM_VERSION, say: Callable[[str], None] = print
) -> Install:
    """The venv with LiteLLM's proxy, made on the first call; raises LiteLLMUnavailable."""
    stamp = venv / STAMP
    if stamp.exists() and (venv / "bin" / "litellm").exists():
        data = json.loads(stamp.read_text())
        if data["version"] == version:
            return Install(venv, version, data["requested"], tuple(data["deviations"]))
    shutil.rmtree(venv, ignore_errors=True)  # a half-made venv from an interrupted run
    # sys.executable is the product's venv; `-m venv` builds on its base interpreter.
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = _install(venv, version, say)
    stamp.write_text(
        json.dumps({"version": version, "requested": install.requested,
                    "deviations": list(install.deviations)}, indent=2) + "\n"
    )  # fmt: skip
    return install
