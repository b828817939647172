"""Real processes for regression tests: the fake vLLM server in a process of its own
(so a test can SIGKILL it, as an engine dies), and ``appliance serve`` itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

__all__ = [
    "HOOKED_SERVE",
    "appliance_serve",
    "fake_vllm_process",
    "start_serve",
    "wait_until_answering",
]

REPO = Path(__file__).resolve().parents[2]

_FAKE_VLLM = """
import sys, uvicorn
from tests.support.fake_vllm import FakeState, create_fake_vllm
uvicorn.run(create_fake_vllm(FakeState()), host="127.0.0.1", port=int(sys.argv[1]),
            log_level="warning")
"""


def wait_until_answering(
    url: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float = 60
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        assert process.poll() is None, log.read_text(errors="replace")[-2000:]
        assert time.monotonic() < deadline, f"{url} did not answer in {timeout_s} s"
        time.sleep(0.1)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def fake_vllm_process(port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The fake vLLM on ``port`` in its own process; ``.kill()`` it to play a dead engine."""
    process = subprocess.Popen(
        [sys.executable, "-c", _FAKE_VLLM, str(port)],
        cwd=REPO, stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_until_answering(f"http://127.0.0.1:{port}/health", process, log)
        yield process
    finally:
        _stop(process)


# ``appliance serve`` under an audit hook that writes every connect (host, port) and
# name lookup the process makes to a JSON-lines file. The hook is installed before the
# gateway imports anything, so a connection made by any library is seen. uvloop is kept
# out: libuv connects in C, where no audit hook sees it (asyncio's loop runs the same
# code paths above it).
HOOKED_SERVE = """
import json, runpy, socket, sys
out = open(sys.argv[1], "a", buffering=1)
def hook(event, args):
    if event == "socket.connect":
        sock, address = args
        host = address[0] if isinstance(address, tuple) else str(address)
        port = address[1] if isinstance(address, tuple) else None
        out.write(json.dumps({"family": int(sock.family), "host": host, "port": port}) + "\\n")
    elif event == "socket.getaddrinfo":
        name = args[0].decode() if isinstance(args[0], bytes) else args[0]
        out.write(json.dumps({"getaddrinfo": name}) + "\\n")
sys.addaudithook(hook)
sys.modules["uvloop"] = None
sys.argv = ["appliance", "serve", "--config", sys.argv[2]]
runpy.run_module("appliance.cli", run_name="__main__")
"""


@contextmanager
def appliance_serve(
    config: Path, port: int, log: Path, *, connects: Path | None = None
) -> Iterator[str]:
    """``appliance serve --config CONFIG`` (the database already migrated), its URL once
    it answers. The environment's APPLIANCE_* settings are left out: the file decides.
    ``connects``: run it under :data:`HOOKED_SERVE`, recording its connects there."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    if connects is None:
        argv = [sys.executable, "-m", "appliance.cli", "serve", "--config", str(config)]
    else:
        argv = [sys.executable, "-c", HOOKED_SERVE, str(connects), str(config)]
    process = subprocess.Popen(
        argv, cwd=REPO, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(f"{url}/healthz", process, log)
        yield url
    finally:
        _stop(process)


def start_serve(config: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """``appliance serve --config CONFIG`` once it answers, for a test that kills it
    (:func:`appliance_serve` stops it for you). The environment's APPLIANCE_* settings
    are left out: the file decides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", "serve", "--config", str(config)],
        cwd=REPO, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    wait_until_answering(f"http://127.0.0.1:{port}/healthz", process, log)
    return process
