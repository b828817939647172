"""Pre-flight checks against a fake ``nvidia-smi`` on PATH: each failure names the
problem and what to do."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from tests.deploy.ansible_harness import (
    VENV_BIN,
    ansible_available,
    local_inventory,
    run_playbook,
)

pytestmark = pytest.mark.skipif(not ansible_available(), reason="ansible-core not installed")

PLAYBOOK = """\
- name: Pre-flight
  hosts: appliance_engine
  gather_facts: false
  roles:
    - role: appliance_preflight
"""

H200 = "NVIDIA H200, 143771 MiB, 570.86.15"
NVLINK_TOPO = """\
\tGPU0\tGPU1\tNIC0\tCPU Affinity\tNUMA Affinity
GPU0\t X \tNV18\tSYS\t0-47\t0
GPU1\tNV18\t X \tSYS\t0-47\t0
NIC0\tSYS\tSYS\t X \t\t
"""
PCIE_TOPO = NVLINK_TOPO.replace("NV18", "PHB")


def _fake_nvidia_smi(tmp: Path, gpus: list[str], topo: str) -> Path:
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    script = bin_dir / "nvidia-smi"
    script.write_text(
        textwrap.dedent(
            """\
            #!/bin/sh
            if [ "$1" = topo ]; then
            cat <<'EOF'
            {topo}EOF
            else
            cat <<'EOF'
            {gpus}
            EOF
            fi
            """
        ).format(topo=topo, gpus="\n".join(gpus))
    )
    script.chmod(0o755)
    return bin_dir


def _preflight(tmp: Path, gpus: list[str] | None, topo: str = NVLINK_TOPO, **overrides: object):
    """Run the role with a fake nvidia-smi first on PATH (none when ``gpus`` is None)."""
    variables: dict[str, object] = {
        "appliance_preflight_gpu_count": 2,
        "appliance_preflight_gpu_name": "h200",
        "appliance_preflight_model_dir": str(tmp),
        "appliance_preflight_min_free_gib": 0.001,
        "appliance_preflight_ports": [],
        "appliance_preflight_check_clock": False,
        **overrides,
    }
    env = {}
    if gpus is not None:
        bin_dir = _fake_nvidia_smi(tmp, gpus, topo)
        env["PATH"] = f"{bin_dir}{os.pathsep}{VENV_BIN}{os.pathsep}{os.environ['PATH']}"
    inventory = local_inventory(tmp, {"appliance_engine": {"gpu-0": {}}}, **variables)
    playbook = tmp / "preflight.yml"
    playbook.write_text(PLAYBOOK, encoding="utf-8")
    return run_playbook(playbook, inventory, env=env)


def test_matching_node_passes(tmp_path):
    run = _preflight(tmp_path, [H200, H200])
    assert run.returncode == 0, run.output


def test_gpu_count_mismatch_fails_clearly(tmp_path):
    run = _preflight(tmp_path, [H200])
    assert run.returncode != 0
    assert "GPU count mismatch on gpu-0: the plan needs 2 GPUs per node, nvidia-smi lists 1" in (
        run.output
    )


def test_wrong_gpu_type_fails_clearly(tmp_path):
    run = _preflight(tmp_path, [H200, "NVIDIA A100-SXM4-80GB, 81920 MiB, 570.86.15"])
    assert run.returncode != 0
    assert "GPU type mismatch on gpu-0: the plan expects h200" in run.output


def test_missing_nvlink_fails_clearly(tmp_path):
    run = _preflight(tmp_path, [H200, H200], topo=PCIE_TOPO)
    assert run.returncode != 0
    assert "NVLink is not up between all GPUs on gpu-0" in run.output
    assert "GPU0:PHB" in run.output


def test_missing_driver_fails_clearly(tmp_path):
    run = _preflight(tmp_path, None, appliance_preflight_nvidia_smi="/nonexistent/nvidia-smi")
    assert run.returncode != 0
    assert "install the NVIDIA driver" in run.output


def test_not_enough_disk_fails_clearly(tmp_path):
    run = _preflight(tmp_path, [H200, H200], appliance_preflight_min_free_gib=10**9)
    assert run.returncode != 0
    assert "not enough disk space for the weights on gpu-0" in run.output


def test_port_in_use_fails_clearly(tmp_path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        run = _preflight(tmp_path, [H200, H200], appliance_preflight_ports=[port])
    assert run.returncode != 0
    assert f"port {port}/tcp is already in use on gpu-0" in run.output
