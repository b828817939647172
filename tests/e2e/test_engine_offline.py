"""The engine runs offline, started exactly as the Ansible role's systemd unit starts it
(issue 18). The unit is rendered by the real role from the planner's CPU plan for the
dev model; its ``ExecStart`` argv, ``Environment=`` lines and ``EnvironmentFile`` are run
as systemd would run them, inside a network namespace whose only interface is loopback
(``unshare -n``), under ``strace -f`` on every network system call of every process
and thread (Python or C: vLLM's engine core, gloo, ZeroMQ). The engine must answer a
completion, and every connection it attempted must target loopback: no outside address,
no DNS query (nothing sent to port 53).

The Helm chart's container command is proven the same way by the image test
(tests/deploy/test_images.py: the chart-rendered engine container in a pod whose
network is ``none``)."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from appliance.modelstore import prepare_dev_model
from tests.deploy.ansible_harness import (
    ansible_available,
    local_inventory,
    plan_vars,
    run_playbook,
    unit_directives,
)
from tests.support.servers import free_port

REPO = Path(__file__).resolve().parents[2]
DEV_MODEL_DIR = REPO / ".data" / "models" / "smollm2-135m-instruct"
SERVED_NAME = "smollm2-135m-instruct"
API_KEY = "offline-engine-test-key"
START_TIMEOUT_S = 900

pytestmark = [
    pytest.mark.timeout(START_TIMEOUT_S + 300),
    pytest.mark.skipif(not ansible_available(), reason="ansible-core not installed"),
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None,
        reason="needs root, unshare and ip (a network namespace with loopback only)",
    ),
    pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace (apt install strace)"),
]

PLAYBOOK = """\
- name: Engines
  hosts: appliance_engine
  gather_facts: false
  roles:
    - role: appliance_engine
"""

# Runs inside the namespace: bring loopback up, start the unit's command under strace,
# wait for /health, ask one question, stop the engine.
DRIVER = textwrap.dedent(
    """
    import json, os, signal, subprocess, sys, time, urllib.request
    spec = json.loads(open(sys.argv[1]).read())
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    # /proc/net is this namespace's (/sys/class/net would show the host's sysfs).
    lines = open("/proc/net/dev").read().splitlines()[2:]
    interfaces = sorted(line.split(":")[0].strip() for line in lines)
    log = open(spec["log"], "ab")
    # --seccomp-bpf: a kernel filter stops the engine only at the traced calls, not at
    # every system call of every process and thread (imports, gcc for torch.compile): the
    # same trace, without making each other system call about 7x slower.
    engine = subprocess.Popen(
        ["strace", "-f", "--seccomp-bpf", "-qq", "-e", "trace=connect,sendto,sendmsg,sendmmsg",
         "-o", spec["trace"], "--", *spec["argv"]],
        env=spec["env"], cwd=spec["cwd"], stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    result = {"interfaces": interfaces}
    base = "http://127.0.0.1:%d" % spec["port"]
    auth = {"Authorization": "Bearer " + spec["key"], "Content-Type": "application/json"}
    deadline = time.monotonic() + spec["timeout"]
    try:
        while time.monotonic() < deadline and engine.poll() is None:
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(1)
        result["started"] = engine.poll() is None and time.monotonic() < deadline
        if result["started"]:
            body = json.dumps({
                "model": spec["model"], "max_tokens": 12, "temperature": 0,
                "messages": [{"role": "user", "content": "What is the capital of France?"}],
            }).encode()
            request = urllib.request.Request(
                base + "/v1/chat/completions", data=body, headers=auth
            )
            with urllib.request.urlopen(request, timeout=300) as response:
                answer = json.loads(response.read())
            result["answer"] = answer["choices"][0]["message"]["content"]
    finally:
        if engine.poll() is None:
            os.killpg(engine.pid, signal.SIGTERM)
            try:
                engine.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(engine.pid, signal.SIGKILL)
                engine.wait()
        result["returncode"] = engine.returncode
        open(spec["result"], "w").write(json.dumps(result))
    """
)

_INET_ADDRESS = re.compile(r'inet_(?:addr|pton)\((?:AF_INET6, )?"(?P<address>[^"]+)"')
_PORT = re.compile(r"sin6?_port=htons\((?P<port>\d+)\)")


def attempted_connections(trace: str) -> list[tuple[str, str, int]]:
    """(family, address, port) of every inet connect() and addressed send in an strace
    log; Unix, netlink and unaddressed sends are local by construction."""
    found = []
    for line in trace.splitlines():
        if "sa_family=AF_INET" not in line:
            continue
        address = _INET_ADDRESS.search(line)
        port = _PORT.search(line)
        family = "AF_INET6" if "AF_INET6" in line else "AF_INET"
        found.append(
            (family, address["address"] if address else "?", int(port["port"]) if port else -1)
        )
    return found


def test_trace_parser_reads_strace_lines() -> None:
    inet = '{sa_family=AF_INET, sin_port=htons(%d), sin_addr=inet_addr("%s")}, 16'
    inet6 = (
        "{sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), "
        'inet_pton(AF_INET6, "2001:db8::1", &sin6_addr), sin6_scope_id=0}, 28'
    )
    trace = "\n".join(
        [
            f"101 connect(5, {inet % (8100, '127.0.0.1')}) = 0",
            '102 connect(7, {sa_family=AF_UNIX, sun_path="/tmp/x"}, 110) = 0',
            f'103 sendto(9, "\\1", 1, 0, {inet % (53, "10.0.0.2")}) = -1 ENETUNREACH',
            '104 sendto(9, "\\1", 1, MSG_NOSIGNAL, NULL, 0) = 1',
            f"105 connect(3, {inet6}) = -1 ENETUNREACH",
        ]
    )
    assert attempted_connections(trace) == [
        ("AF_INET", "127.0.0.1", 8100),
        ("AF_INET", "10.0.0.2", 53),
        ("AF_INET6", "2001:db8::1", 443),
    ]


def _local(address: str) -> bool:
    """Loopback, or the unspecified address (which Linux connects to this host)."""
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    return ip.is_loopback or ip.is_unspecified


def _render_unit(tmp: Path, port: int) -> tuple[list[str], dict[str, str], Path]:
    """ExecStart argv and the environment systemd would give it, from the real role."""
    # One CPU rank, the dev context length: what `make up` runs on a small host.
    plan = plan_vars(
        tmp, "-m", SERVED_NAME, "--gpu", "cpu", "--gpus-per-node", "1", "--max-model-len", "2048"
    )
    inventory = local_inventory(
        tmp,
        {"appliance_engine": {"cpu-0": {}}},
        appliance_engine_api_key=API_KEY,
        appliance_engine_port=port,
        appliance_engine_host="127.0.0.1",
        # This host's address on the engine network; in the namespace only loopback.
        appliance_engine_host_ip="127.0.0.1",
    )
    playbook = tmp / "engine.yml"
    playbook.write_text(PLAYBOOK, encoding="utf-8")
    # Extra vars after the plan's: the dev model lives in the checkout, not /models.
    run = run_playbook(
        playbook, inventory, "-e", f"@{plan}", "-e", f"appliance_engine_model_path={DEV_MODEL_DIR}"
    )
    assert run.returncode == 0, run.output
    root = tmp / "root" / "cpu-0"
    unit = (root / "etc/systemd/system/appliance-engine-head.service").read_text()
    directives = unit_directives(unit)
    (exec_start,) = directives["ExecStart"]
    argv = [part.replace("%%", "%") for part in shlex.split(exec_start)]
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root")}
    for line in directives.get("Environment", []):
        name, _, value = line.partition("=")
        env[name] = value
    (env_file,) = directives["EnvironmentFile"]
    for line in (root / env_file.lstrip("/")).read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            env[name] = value
    (state_dir,) = directives["WorkingDirectory"]
    cwd = root / state_dir.lstrip("/")
    cwd.mkdir(parents=True, exist_ok=True)
    return argv, env, cwd


@pytest.mark.e2e
def test_the_engine_started_as_its_unit_answers_with_no_route_out(tmp_path: Path) -> None:
    prepare_dev_model(DEV_MODEL_DIR)
    port = free_port()
    argv, env, cwd = _render_unit(tmp_path, port)
    assert argv[0] == sys.executable  # the role's appliance_engine_python (the venv here)
    assert argv[1:4] == ["-m", "appliance.engine.vllm_cli", "serve"]
    assert env["HF_HUB_OFFLINE"] == "1" and env["VLLM_API_KEY"] == API_KEY

    spec = {
        "argv": argv, "env": env, "cwd": str(cwd), "port": port, "key": API_KEY,
        "model": SERVED_NAME, "timeout": START_TIMEOUT_S,
        "log": str(tmp_path / "engine.log"), "trace": str(tmp_path / "trace.txt"),
        "result": str(tmp_path / "result.json"),
    }  # fmt: skip
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec))
    subprocess.run(
        ["unshare", "-n", "--", sys.executable, "-c", DRIVER, str(spec_file)],
        check=True, timeout=START_TIMEOUT_S + 240,
    )  # fmt: skip
    result = json.loads((tmp_path / "result.json").read_text())
    engine_log = (tmp_path / "engine.log").read_text(errors="replace")[-3000:]

    assert result["interfaces"] == ["lo"]
    assert result["started"], engine_log
    assert "Paris" in result["answer"], result
    trace = (tmp_path / "trace.txt").read_text(errors="replace")
    # The engine's processes talk over Unix sockets and ZeroMQ at least: a trace with no
    # connect() at all means strace saw nothing, not that nothing happened.
    assert " connect(" in trace, "strace recorded no connect(): the trace is not working"
    connections = attempted_connections(trace)
    outside = [c for c in connections if not _local(c[1])]
    assert not outside, f"connections beyond loopback: {outside[:10]}"
    assert not [c for c in connections if c[2] == 53], "a DNS query was attempted"
