"""appliance/engine/supervisor.py against a fake engine: a small HTTP server script.

No vLLM is started. The fake engine is a Python script written into tmp_path; a
LaunchSpec subclass swaps vLLM's argv for the script's (the seam the supervisor
offers: it runs whatever ``spec.argv()`` says with ``spec.environment()``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from appliance.engine.launch import EngineTls, LaunchSpec
from appliance.engine.supervisor import EngineSupervisor, wait_healthy
from appliance.engine.tls import health_check_context
from appliance.errors import EngineStartError

pytestmark = pytest.mark.timeout(120)

API_KEY = "sk-fake-engine-3b1d"

FAKE_ENGINE = r"""
import argparse
import http.server
import json
import os
import subprocess
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--health-delay", type=float, default=0.0)
parser.add_argument("--fail", action="store_true")
parser.add_argument("--child-pid-file")
parser.add_argument("--env-file")
parser.add_argument("--ssl-keyfile")
parser.add_argument("--ssl-certfile")
parser.add_argument("--ssl-ca-certs")
parser.add_argument("--ssl-cert-reqs", type=int, default=0)
args = parser.parse_args()

print(f"fake engine pid {os.getpid()} starting", flush=True)
if args.env_file:
    with open(args.env_file, "w") as handle:
        json.dump(dict(os.environ), handle)
if args.child_pid_file:
    # A worker of its own, as vLLM has: it must not outlive the engine.
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    with open(args.child_pid_file, "a") as handle:
        handle.write(f"{child.pid}\n")
if args.fail:
    print("INFO loading model", flush=True)
    print("ValueError: bad model config", flush=True)
    sys.exit(1)

started = time.monotonic()


class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ready = time.monotonic() - started >= args.health_delay
        self.send_response(200 if self.path == "/health" and ready else 503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format, *arguments):
        pass


server = http.server.HTTPServer(("127.0.0.1", args.port), Health)
if args.ssl_certfile:  # as vLLM's server does with these flags
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.ssl_certfile, args.ssl_keyfile)
    context.load_verify_locations(args.ssl_ca_certs)
    context.verify_mode = ssl.VerifyMode(args.ssl_cert_reqs)
    server.socket = context.wrap_socket(server.socket, server_side=True)
print(f"fake engine listening on port {args.port}", flush=True)
server.serve_forever()
"""


@dataclass(frozen=True)
class FakeEngineSpec(LaunchSpec):
    """A LaunchSpec that runs the fake engine script instead of vLLM."""

    script: Path = Path("fake_engine.py")
    mode_args: tuple[str, ...] = ()

    def argv(self) -> list[str]:
        tls = self.tls.args() if self.tls is not None else []
        return [self.python, str(self.script), "--port", str(self.port), *self.mode_args, *tls]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _gone(pid: int) -> bool:
    """No such process, or only a zombie left for its new parent (init) to reap."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def _pids(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "fake_engine.py"
    path.write_text(FAKE_ENGINE, encoding="utf-8")
    return path


@pytest.fixture
def child_pid_file(tmp_path: Path) -> Iterator[Path]:
    """Where fake engines record their workers; any a test leaves behind is killed."""
    path = tmp_path / "children.txt"
    yield path
    for pid in _pids(path):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def make_supervisor(tmp_path: Path, script: Path) -> Iterator[Callable[..., EngineSupervisor]]:
    made: list[EngineSupervisor] = []

    def _make(*mode_args: str, tls: EngineTls | None = None, **options: object) -> EngineSupervisor:
        spec = FakeEngineSpec(
            model_dir=tmp_path / "model",
            served_model_name="fake-model",
            port=_free_port(),
            api_key=API_KEY,
            python=sys.executable,
            script=script,
            mode_args=mode_args,
            tls=tls,
        )
        options.setdefault("log_path", tmp_path / "logs" / "engine.log")
        options.setdefault("base_env", dict(os.environ))
        options.setdefault("startup_timeout_s", 60.0)
        supervisor = EngineSupervisor(spec, **options)  # type: ignore[arg-type]
        made.append(supervisor)
        return supervisor

    yield _make
    for supervisor in made:
        supervisor.stop()


def test_start_waits_until_the_engine_is_healthy(make_supervisor) -> None:
    supervisor = make_supervisor("--health-delay", "1.5")
    waits: list[float] = []
    supervisor.start(on_wait=waits.append)
    assert supervisor.is_running()
    assert supervisor.pid is not None
    assert _healthy(supervisor.spec.url)
    assert waits, "start() returned without waiting for the delayed health check"
    assert supervisor.restarts == 0


def test_start_reports_the_engines_own_error_and_exit_code(make_supervisor, tmp_path) -> None:
    supervisor = make_supervisor("--fail", startup_timeout_s=10.0)
    with pytest.raises(EngineStartError) as caught:
        supervisor.start()
    message = str(caught.value)
    assert "ValueError: bad model config" in message
    assert "exited with code 1" in message
    assert "fake-model" in message
    assert str(tmp_path / "logs" / "engine.log") in message
    assert not supervisor.is_running()


def test_start_gives_up_on_an_engine_that_never_becomes_healthy(make_supervisor) -> None:
    supervisor = make_supervisor("--health-delay", "600", startup_timeout_s=1.0)
    with pytest.raises(EngineStartError, match="did not become healthy within 1s"):
        supervisor.start()
    pid = supervisor.pid
    assert pid is not None
    assert not supervisor.is_running()
    assert _gone(pid)


def test_watcher_restarts_a_killed_engine(make_supervisor, wait_until) -> None:
    events: list[str] = []
    supervisor = make_supervisor(on_event=events.append)
    supervisor.start()
    first = supervisor.pid
    assert first is not None

    os.kill(first, signal.SIGKILL)

    assert wait_until(
        lambda: (
            supervisor.restarts == 1
            and supervisor.is_running()
            and supervisor.pid != first
            and _healthy(supervisor.spec.url)
        ),
        timeout_s=60.0,
    ), f"not restarted: restarts={supervisor.restarts} events={events}"
    assert wait_until(lambda: "engine restarted and healthy" in events)
    assert any("exited with code -9; restarting in 1s" in event for event in events), events


def test_watcher_gives_up_after_max_restarts(make_supervisor, wait_until) -> None:
    events: list[str] = []
    supervisor = make_supervisor(max_restarts=0, on_event=events.append)
    supervisor.start()
    assert supervisor.pid is not None
    os.kill(supervisor.pid, signal.SIGKILL)
    assert wait_until(lambda: any("giving up after 0 restarts" in e for e in events), 30.0)
    assert not supervisor.is_running()
    assert supervisor.restarts == 0


def test_stop_leaves_no_process_in_the_group(make_supervisor, child_pid_file, wait_until) -> None:
    supervisor = make_supervisor("--child-pid-file", str(child_pid_file))
    supervisor.start()
    engine = supervisor.pid
    assert engine is not None
    [child] = _pids(child_pid_file)
    assert os.getpgid(child) == engine, "the worker should share the engine's process group"

    supervisor.stop()

    assert not supervisor.is_running()
    assert wait_until(lambda: _gone(engine) and _gone(child)), "engine or its worker survived"


def test_workers_of_a_crashed_engine_do_not_survive_stop(
    make_supervisor, child_pid_file, wait_until
) -> None:
    supervisor = make_supervisor("--child-pid-file", str(child_pid_file))
    supervisor.start()
    assert supervisor.pid is not None
    os.kill(supervisor.pid, signal.SIGKILL)
    assert wait_until(lambda: supervisor.restarts == 1 and supervisor.is_running(), 60.0)
    assert wait_until(lambda: len(_pids(child_pid_file)) == 2)

    supervisor.stop()

    first_worker, second_worker = _pids(child_pid_file)
    assert wait_until(lambda: _gone(second_worker))
    assert wait_until(lambda: _gone(first_worker), timeout_s=3.0), "crashed engine's worker"


def test_log_file_receives_the_engine_output(make_supervisor, tmp_path, wait_until) -> None:
    log = tmp_path / "logs" / "engine.log"
    supervisor = make_supervisor()
    supervisor.start()
    port = supervisor.spec.port
    assert wait_until(lambda: log.exists() and f"listening on port {port}" in log.read_text())
    assert f"fake engine pid {supervisor.pid} starting" in log.read_text()
    assert supervisor.log_tail()[-1] == f"fake engine listening on port {port}"
    assert supervisor.last_line() == f"fake engine listening on port {port}"


def test_log_file_keeps_a_failed_engines_output(make_supervisor, tmp_path) -> None:
    supervisor = make_supervisor("--fail", startup_timeout_s=10.0)
    with pytest.raises(EngineStartError):
        supervisor.start()
    text = (tmp_path / "logs" / "engine.log").read_text()
    assert "INFO loading model\nValueError: bad model config\n" in text


def test_engine_runs_offline_with_the_key_in_its_environment(make_supervisor, tmp_path) -> None:
    env_file = tmp_path / "env.json"
    supervisor = make_supervisor(
        "--env-file",
        str(env_file),
        base_env={"PATH": os.environ.get("PATH", ""), "HF_HUB_OFFLINE": "0", "KEEP_ME": "yes"},
    )
    supervisor.start()
    env = json.loads(env_file.read_text())
    assert env["HF_HUB_OFFLINE"] == "1"
    assert env["TRANSFORMERS_OFFLINE"] == "1"
    assert env["VLLM_NO_USAGE_STATS"] == "1"
    assert env["DO_NOT_TRACK"] == "1"
    assert env["VLLM_API_KEY"] == API_KEY
    assert env["KEEP_ME"] == "yes"
    cmdline = Path(f"/proc/{supervisor.pid}/cmdline").read_bytes().decode()
    assert API_KEY not in cmdline


def test_wait_healthy_is_false_when_the_process_is_dead() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    assert wait_healthy(url, timeout_s=60.0, is_alive=lambda: False) is False


def test_wait_healthy_is_false_after_the_timeout() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    waits: list[float] = []
    assert wait_healthy(url, timeout_s=0.2, on_wait=waits.append, interval_s=0.05) is False
    assert waits


def test_a_taken_port_is_refused_before_spawning(tmp_path) -> None:
    import socket as socket_module

    from appliance.engine import EngineSupervisor, LaunchSpec
    from appliance.errors import EngineStartError

    with socket_module.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        spec = LaunchSpec(model_dir=tmp_path, served_model_name="m", port=port, api_key="k")
        supervisor = EngineSupervisor(spec, log_path=tmp_path / "engine.log", base_env={})
        with pytest.raises(EngineStartError, match="already in use"):
            supervisor.start()
        assert supervisor.pid is None


# -- mutual TLS -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from datetime import UTC, datetime

    from appliance.pki import init_ca

    directory = tmp_path_factory.mktemp("pki")
    init_ca(directory, gateway_hosts=["127.0.0.1"], engines={"engine-0": ["engine.internal"]},
            days=2, now=datetime.now(UTC))  # fmt: skip
    return directory


def _engine_tls(pki: Path) -> EngineTls:
    return EngineTls(pki / "engine-0.crt", pki / "engine-0.key", pki / "ca.crt")


def _no_client_cert(pki: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    context.check_hostname = False
    return context


def test_health_checks_of_a_mutual_tls_engine_present_the_client_certificate(
    make_supervisor, pki
) -> None:
    # The engine's certificate names engine.internal, not 127.0.0.1: the supervisor
    # checks the chain, not the name, of its own child.
    health = health_check_context(
        ca_file=pki / "ca.crt", cert_file=pki / "gateway.crt", key_file=pki / "gateway.key"
    )
    supervisor = make_supervisor(tls=_engine_tls(pki), health_tls=health)
    assert supervisor.spec.url.startswith("https://")
    supervisor.start()
    assert supervisor.is_running()
    # The engine really requires the certificate: without one, no answer.
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{supervisor.spec.url}/health", verify=_no_client_cert(pki), timeout=2.0)


def test_a_mutual_tls_engine_without_health_credentials_is_refused(make_supervisor, pki) -> None:
    with pytest.raises(ValueError, match="health_tls"):
        make_supervisor(tls=_engine_tls(pki))


def test_health_checks_without_the_client_certificate_never_pass(make_supervisor, pki) -> None:
    supervisor = make_supervisor(
        tls=_engine_tls(pki), health_tls=_no_client_cert(pki), startup_timeout_s=3.0
    )
    with pytest.raises(EngineStartError, match="did not become healthy"):
        supervisor.start()
