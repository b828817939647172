"""Run one vLLM engine as a child process: start, wait for health, restart with
backoff when it crashes, stop it (and its children) on shutdown."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

import httpx

from appliance.engine.launch import LaunchSpec
from appliance.errors import EngineStartError

__all__ = ["EngineSupervisor", "wait_healthy"]

_PR_SET_PDEATHSIG = 1
_LOG_TAIL_LINES = 200


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    # If the supervising process is killed outright, the kernel stops the engine too.
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def wait_healthy(
    url: str,
    *,
    timeout_s: float,
    is_alive: Callable[[], bool] = lambda: True,
    on_wait: Callable[[float], None] = lambda _elapsed: None,
    interval_s: float = 1.0,
    verify: ssl.SSLContext | bool = True,
) -> bool:
    """Poll ``url/health`` until it answers 200 (True), the process dies or the
    timeout passes (False). ``verify``: the TLS client context for an https:// engine
    that requires a client certificate."""
    started = time.monotonic()
    with httpx.Client(timeout=5.0, verify=verify) as client:
        while True:
            elapsed = time.monotonic() - started
            if not is_alive():
                return False
            try:
                if client.get(f"{url}/health").status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            if elapsed > timeout_s:
                return False
            on_wait(elapsed)
            time.sleep(interval_s)


def _relevant_error(lines: list[str]) -> str:
    """The engine's own explanation: from the last traceback or error line on."""
    for index in range(len(lines) - 1, -1, -1):
        line = lines[index]
        if line.startswith("Traceback") or "Error" in line or "error:" in line:
            start = index
            while start > 0 and lines[start - 1].startswith(("Traceback", "  ", "\t")):
                start -= 1
            return "\n".join(lines[max(start, len(lines) - 40) :])
    return "\n".join(lines[-20:])


class EngineSupervisor:
    """Owns one engine process and its log file.

    ``base_env`` is the environment the engine starts from (the launch spec adds the
    offline switches and the shared secret); the caller passes it, so nothing here
    reads the process environment. ``health_tls``: the client context for health
    checks of an engine that serves mutual TLS (``spec.tls``)."""

    def __init__(
        self,
        spec: LaunchSpec,
        *,
        log_path: Path,
        base_env: Mapping[str, str],
        startup_timeout_s: float = 1200.0,
        max_restarts: int = 5,
        health_tls: ssl.SSLContext | None = None,
        on_event: Callable[[str], None] = lambda _msg: None,
    ):
        if spec.tls is not None and health_tls is None:
            raise ValueError("an engine that requires client certificates needs health_tls")
        self.spec = spec
        self.log_path = log_path
        self.startup_timeout_s = startup_timeout_s
        self.max_restarts = max_restarts
        self.restarts = 0
        self._base_env = dict(base_env)
        self._health_tls = health_tls
        self._on_event = on_event
        self._process: subprocess.Popen[bytes] | None = None
        self._tail: deque[str] = deque(maxlen=_LOG_TAIL_LINES)
        self._stopping = threading.Event()
        self._monitor: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- state ---------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def last_line(self) -> str:
        return self._tail[-1] if self._tail else ""

    def log_tail(self) -> list[str]:
        return list(self._tail)

    # -- lifecycle -------------------------------------------------------------------
    def _port_taken(self) -> bool:
        # Something else answering on the engine's port would pass our health check.
        try:
            with socket.create_connection((self.spec.host, self.spec.port), timeout=1.0):
                return True
        except OSError:
            return False

    def _spawn(self) -> None:
        if self._port_taken():
            raise EngineStartError(
                f"port {self.spec.port} on {self.spec.host} is already in use; stop what "
                "listens there or set engine.port"
            )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._tail.clear()
        env = self.spec.environment(self._base_env, cpu_count=os.cpu_count() or 1)
        process = subprocess.Popen(
            self.spec.argv(),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: Ctrl-C reaches us, not it
            preexec_fn=_die_with_parent,
        )
        self._process = process
        assert process.stdout is not None
        threading.Thread(
            target=self._pump_output, args=(process.stdout,), daemon=True,
            name="engine-log",
        ).start()  # fmt: skip

    def _pump_output(self, stream: IO[bytes]) -> None:
        with self.log_path.open("ab") as log:
            for raw in iter(stream.readline, b""):
                log.write(raw)
                log.flush()
                self._tail.append(raw.decode("utf-8", "replace").rstrip())

    def _start_and_wait(self, on_wait: Callable[[float], None]) -> None:
        self._spawn()
        healthy = wait_healthy(
            self.spec.url,
            timeout_s=self.startup_timeout_s,
            # A stop() during a (re)start ends the wait at once.
            is_alive=lambda: self.is_running() and not self._stopping.is_set(),
            on_wait=on_wait,
            verify=self._health_tls if self._health_tls is not None else True,
        )
        if healthy:
            return
        process = self._process
        code = process.poll() if process else None
        self._terminate()
        if self._stopping.is_set():
            raise EngineStartError(f"engine {self.spec.served_model_name} stopped while starting")
        time.sleep(0.2)  # let the log pump drain the last lines
        detail = _relevant_error(self.log_tail())
        if code is None:
            reason = f"did not become healthy within {self.startup_timeout_s:.0f}s"
        else:
            reason = f"exited with code {code} before becoming healthy"
        raise EngineStartError(
            f"engine {self.spec.served_model_name} {reason} (log: {self.log_path}):\n{detail}"
        )

    def start(self, on_wait: Callable[[float], None] = lambda _elapsed: None) -> None:
        """Start the engine and block until it is healthy; then watch it."""
        self._stopping.clear()
        self._start_and_wait(on_wait)
        self._monitor = threading.Thread(target=self._watch, daemon=True, name="engine-watch")
        self._monitor.start()

    def _watch(self) -> None:
        backoff = 1.0
        while not self._stopping.is_set():
            process = self._process
            if process is None or process.poll() is None:
                self._stopping.wait(1.0)
                continue
            if self.restarts >= self.max_restarts:
                self._on_event(
                    f"engine exited with code {process.returncode}; "
                    f"giving up after {self.restarts} restarts"
                )
                return
            self._on_event(
                f"engine exited with code {process.returncode}; restarting in {backoff:.0f}s"
            )
            with self._lock:
                self._terminate()  # leftover workers of the crashed engine
            if self._stopping.wait(backoff):
                return
            self.restarts += 1
            backoff = min(backoff * 2, 60.0)
            try:
                with self._lock:
                    if self._stopping.is_set():
                        return
                    self._start_and_wait(lambda _elapsed: None)
                self._on_event("engine restarted and healthy")
                backoff = 1.0
            except EngineStartError as exc:
                self._on_event(str(exc))

    def _terminate(self, grace_s: float = 20.0) -> None:
        """Stop the engine and everything in its process group. The group is killed
        even when the main process already exited: vLLM's workers may outlive it and
        would keep holding memory (GPU memory, on a GPU host)."""
        process = self._process
        if process is None:
            return
        group = process.pid  # start_new_session: the group id is the leader's pid
        if process.poll() is None:
            try:
                os.killpg(group, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            self._terminate()
        if self._monitor is not None and self._monitor is not threading.current_thread():
            self._monitor.join(timeout=5)
