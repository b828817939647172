"""The image test's ``make image``, started as soon as collection ends.

A full run reaches tests/deploy/test_images.py minutes after it starts (the Ansible
tests before it in name order), and the build (mmdebstrap, pip inside the root
filesystem, umoci, skopeo: about five and a half minutes here) needs none of their
results. Started when collection ends, it runs on the second core while those tests run
(an Ansible playbook or a vLLM-CPU start keeps mostly one core busy), and the image
test's fixture only waits for whatever is left. The build itself is unchanged: the same
script, arguments and environment as the fixture's own build, the same checks on its
output. Started only when the image test is selected and would build
(``APPLIANCE_TEST_IMAGES=1``, or ``reuse`` with nothing built yet) and the tools are
present; otherwise the fixture builds (or fails) exactly as before.

The build makes the appliance wheel in the source tree (pip builds in place) in its first
seconds, and so do test_ansible_wheelhouse, test_bundle and test_wheel: two such builds at
once could trip over each other's build/ directory, so the start returns only once the
build has gone past that step.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = [
    "BUILD_TIMEOUT_S",
    "IMAGES_DIR",
    "IMAGE_BUILD",
    "MODE",
    "ImageBuild",
    "ImageBuildResult",
    "build_wanted",
    "start_image_build",
    "tools_missing",
]

ROOT = Path(__file__).resolve().parents[2]
IMAGES_DIR = ROOT / "dist" / "images"
MODE = os.environ.get("APPLIANCE_TEST_IMAGES", "")
BUILD_TIMEOUT_S = 2400
# What build_wheelhouse prints once the appliance wheel is built (scripts/build_images.py).
WHEEL_BUILT = b"resolving the "
WHEEL_STEP_TIMEOUT_S = 300
TOOLS = ("podman", "runc", "mmdebstrap", "umoci", "skopeo")


@dataclass(frozen=True)
class ImageBuildResult:
    returncode: int
    stdout: str
    stderr: str
    build_s: float  # from its start to its end
    waited_s: float  # how long the caller waited for it


@dataclass
class ImageBuild:
    process: subprocess.Popen[bytes]
    logs: tempfile.TemporaryDirectory[str]
    started: float

    def result(self) -> ImageBuildResult:
        """Wait for the build (within BUILD_TIMEOUT_S of its start) and read its output."""
        waiting = time.monotonic()
        remaining = BUILD_TIMEOUT_S - (waiting - self.started)
        try:
            self.process.wait(timeout=max(remaining, 1.0))
        except subprocess.TimeoutExpired:
            self.stop()
        ended = time.monotonic()
        log = Path(self.logs.name)
        return ImageBuildResult(
            returncode=self.process.returncode,
            stdout=(log / "stdout").read_text(errors="replace"),
            stderr=(log / "stderr").read_text(errors="replace"),
            build_s=ended - self.started,
            waited_s=ended - waiting,
        )

    def stop(self) -> None:
        """End the build and everything it started (its own process group)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def close(self) -> None:
        self.stop()
        self.logs.cleanup()


IMAGE_BUILD = pytest.StashKey[ImageBuild]()


def tools_missing() -> list[str]:
    return [tool for tool in TOOLS if not shutil.which(tool)]


def build_wanted() -> bool:
    """Whether the image test's fixture builds the images (rather than reuse them)."""
    return MODE == "1" or (MODE == "reuse" and not (IMAGES_DIR / "images.json").exists())


def start_image_build() -> ImageBuild:
    """scripts/build_images.py as the fixture runs it, in the background."""
    logs = tempfile.TemporaryDirectory(prefix="appliance-image-build-")
    log = Path(logs.name)
    with (log / "stdout").open("wb") as stdout, (log / "stderr").open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "build_images.py")],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
            env={"IMAGE_LOCK_FALLBACK": "1", **os.environ},
            start_new_session=True,  # its own group, so stop() reaches mmdebstrap too
        )  # fmt: skip
    build = ImageBuild(process=process, logs=logs, started=time.monotonic())
    deadline = build.started + WHEEL_STEP_TIMEOUT_S
    while process.poll() is None and time.monotonic() < deadline:
        if WHEEL_BUILT in (log / "stdout").read_bytes():
            break
        time.sleep(0.2)
    return build
