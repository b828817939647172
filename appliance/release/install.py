"""``appliance bundle install``: the air-gapped side. Verify, then install from the
bundle only.

- The wheelhouse goes into a new venv, ``<prefix>/venvs/<version>-<set>-<manifest
  hash>``, with ``pip --no-index --no-deps --require-hashes``: exactly the listed
  files. Only a complete venv that runs ``appliance --help`` is switched in, by
  replacing the ``<prefix>/venv`` symlink in one rename; a failure (a full disk, a wheel
  for another platform) removes the half-made venv and leaves the current one in place.
  (The venv is built at its final path because its scripts name their interpreter by
  absolute path; until the switch nothing points at it.)
- Images go into podman's local store (``--load-images``) or a site registry
  (``--registry``, with skopeo), and are named by digest.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from appliance.errors import BundleError
from appliance.release.create import BUNDLE_INFO
from appliance.release.release_verifier import (
    MANIFEST_NAME,
    BundleVerificationError,
    verify_bundle,
)
from appliance.release.wheelhouse import host_platform, wheel_name_version

__all__ = ["InstallRequest", "InstallResult", "check_target", "install_bundle", "verify"]

_COMPLETE = ".bundle-install-complete"
Step = Callable[[str], None]
Progress = Callable[[str, int], None]


@dataclass(frozen=True)
class InstallRequest:
    bundle: Path
    key_text: str
    prefix: Path
    install_set: str = "gateway"
    python: Path = field(default_factory=lambda: Path(sys.executable))
    registry: str | None = None
    load_images: bool = False


@dataclass(frozen=True)
class InstallResult:
    venv: Path
    link: Path
    images: list[str]  # references by digest


def verify(bundle: Path, key_text: str, progress: Progress | None = None) -> dict[str, object]:
    """Verify the bundle; return its ``bundle.json``."""
    try:
        verify_bundle(bundle, key_text, progress)
    except BundleVerificationError as exc:
        raise BundleError(f"the bundle failed verification: {exc}") from exc
    except OSError as exc:
        raise BundleError(f"cannot read the bundle: {exc}") from exc
    info: dict[str, object] = json.loads((bundle / BUNDLE_INFO).read_text(encoding="utf-8"))
    return info


def _python_facts(python: Path) -> tuple[str, str]:
    done = subprocess.run(
        [str(python), "-c", "import sys, platform; "
         "print(f'{sys.version_info[0]}.{sys.version_info[1]}', platform.machine())"],
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise BundleError(f"cannot run {python}: {done.stderr.strip()[-200:]}")
    version, machine = done.stdout.split()
    return version, machine


def check_target(info: dict[str, object], python: Path) -> None:
    """Refuse a bundle made for another Python or CPU architecture, or a newer glibc."""
    version, machine = _python_facts(python)
    wanted_python = str(info.get("python"))
    wanted_platform = str(info.get("platform"))
    if wanted_python != version:
        raise BundleError(
            f"this bundle is for Python {wanted_python}, but {python} is Python {version}; "
            f"make one for this host (bundle create --python-version {version}) or pass "
            f"--python with a Python {wanted_python}"
        )
    if not wanted_platform.endswith(f"_{machine}"):
        raise BundleError(
            f"this bundle is for {wanted_platform}, but this host is {machine}: "
            "make a bundle for this CPU architecture (--platform)"
        )
    here = host_platform()
    if wanted_platform.startswith("manylinux_") and here.startswith("manylinux_"):
        need = tuple(int(x) for x in wanted_platform.split("_")[1:3])
        have = tuple(int(x) for x in here.split("_")[1:3])
        if have < need:
            raise BundleError(
                f"this bundle needs glibc {need[0]}.{need[1]} ({wanted_platform}); this host has "
                f"{have[0]}.{have[1]}"
            )


_NEARLY_FULL = 8 * 2**20


def _pip_failure(done: subprocess.CompletedProcess[str], venv: Path) -> BundleError:
    text = done.stderr + done.stdout
    # ensurepip and pip do not always say why a write failed; a disk left (nearly)
    # without space says it for them.
    if "No space left on device" in text or _free_bytes(venv.parent) < _NEARLY_FULL:
        return BundleError(f"the disk is full: installing into {venv} ran out of space")
    if "is not a supported wheel on this platform" in text:
        return BundleError("a wheel in the bundle is for another platform: " + text.strip()[-300:])
    if "THESE PACKAGES DO NOT MATCH THE HASHES" in text:
        return BundleError("a wheel does not match its pinned hash: " + text.strip()[-300:])
    return BundleError("installing the wheelhouse failed: " + text.strip()[-400:])


def _free_bytes(path: Path) -> int:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return 2**63


def _check_space(wheelhouse: Path, requirements: Path, venvs: Path) -> None:
    """Refuse early when the disk cannot even hold the wheels of the set (installed,
    they take more: a full disk during the install is still caught and named)."""
    names = {line.split(" ", 1)[0] for line in requirements.read_text().splitlines()}
    needed = 0
    for wheel in wheelhouse.glob("*.whl"):
        name, version = wheel_name_version(wheel.name)
        if f"{name}=={version}" in names:
            needed += wheel.stat().st_size
    free = _free_bytes(venvs)
    if free < needed:
        raise BundleError(
            f"the disk is full: {venvs} has {free // 2**20} MiB free, the wheels alone "
            f"need {needed // 2**20} MiB"
        )


def _manifest_id(bundle: Path) -> str:
    return hashlib.sha256((bundle / MANIFEST_NAME).read_bytes()).hexdigest()[:12]


def _install_venv(request: InstallRequest, info: dict[str, object], step: Step) -> Path:
    wheelhouse = request.bundle / "wheelhouse"
    requirements = wheelhouse / f"requirements-{request.install_set}.txt"
    sets = info.get("sets")
    if not isinstance(sets, list) or request.install_set not in sets or not requirements.is_file():
        raise BundleError(
            f"the bundle has no {request.install_set!r} install set; it has {info.get('sets')}"
        )
    venvs = request.prefix / "venvs"
    venv = venvs / f"{info['version']}-{request.install_set}-{_manifest_id(request.bundle)}"
    if (venv / _COMPLETE).is_file():
        step(f"{venv} exists already (this bundle was installed before); switching to it")
        return venv
    shutil.rmtree(venv, ignore_errors=True)  # an interrupted earlier try
    venvs.mkdir(parents=True, exist_ok=True)
    _check_space(wheelhouse, requirements, venvs)
    try:
        step(f"creating a venv with {request.python}")
        made = subprocess.run(
            [str(request.python), "-m", "venv", str(venv)], capture_output=True, text=True
        )
        if made.returncode != 0:
            raise _pip_failure(made, venv)
        step(f"installing the {request.install_set!r} set from the wheelhouse (no index)")
        installed = subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check",
             "install", "--no-index", "--no-deps", "--require-hashes", "--no-compile",
             "--find-links", str(wheelhouse), "-r", str(requirements)],
            capture_output=True, text=True,
        )  # fmt: skip
        if installed.returncode != 0:
            raise _pip_failure(installed, venv)
        check = subprocess.run(
            [str(venv / "bin" / "appliance"), "--help"], capture_output=True, text=True
        )
        if check.returncode != 0:
            raise BundleError(f"the installed appliance does not run: {check.stderr[-300:]}")
        (venv / _COMPLETE).write_text(_manifest_id(request.bundle) + "\n", encoding="utf-8")
    except BaseException:
        shutil.rmtree(venv, ignore_errors=True)
        raise
    return venv


def _switch(link: Path, venv: Path) -> None:
    """Make ``link`` point at ``venv`` in one rename (never a moment without one)."""
    temporary = link.with_name(f".{link.name}.{os.getpid()}")
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(venv)
    if link.exists() and not link.is_symlink():
        raise BundleError(f"{link} exists and is not a symlink; move it away first")
    os.replace(temporary, link)


def _images(request: InstallRequest, info: dict[str, object], step: Step) -> list[str]:
    entries = info.get("images") or []
    if not isinstance(entries, list) or not entries:
        return []
    references = []
    for entry in entries:
        archive = request.bundle / "images" / str(entry["archive"])
        name, digest = str(entry.get("repository", entry["name"])), str(entry["digest"])
        if request.registry:
            tool = shutil.which("skopeo")
            if tool is None:
                raise BundleError("--registry needs skopeo (apt-get install skopeo)")
            destination = (
                f"{request.registry.rstrip('/')}/{name}:{entry.get('tag', info['version'])}"
            )
            step(f"pushing {archive.name} to {destination}")
            command = [tool, "copy", "--preserve-digests", f"oci-archive:{archive}",
                       f"docker://{destination}"]  # fmt: skip
            references.append(f"{request.registry.rstrip('/')}/{name}@{digest}")
        else:
            tool = shutil.which("podman")
            if tool is None:
                raise BundleError("--load-images needs podman (apt-get install podman)")
            step(f"loading {archive.name} into podman's local store")
            command = [tool, "load", "--input", str(archive)]
            references.append(f"{name}@{digest}")
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise BundleError(f"{' '.join(command[:2])} failed: {done.stderr.strip()[-300:]}")
    return references


def install_bundle(
    request: InstallRequest, *, step: Step, progress: Progress | None = None
) -> InstallResult:
    step(f"verifying {request.bundle}")
    info = verify(request.bundle, request.key_text, progress)
    check_target(info, request.python)
    venv = _install_venv(request, info, step)
    link = request.prefix / "venv"
    _switch(link, venv)
    images: list[str] = []
    if request.registry or request.load_images:
        images = _images(request, info, step)
    return InstallResult(venv=venv, link=link, images=images)
