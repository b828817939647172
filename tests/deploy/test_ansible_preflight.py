"""Pre-flight checks against a fake ``nvidia-smi`` on PATH, a fake ``python3`` and fake
fabric paths: each failure names the host, the problem and what to do."""

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

H200 = "NVIDIA H200, 143771 MiB, 575.57.08"
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
    run = _preflight(tmp_path, [H200, "NVIDIA A100-SXM4-80GB, 81920 MiB, 575.57.08"])
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


# -- Python, driver floor, multi-node fabric ---------------------------------------------


def _fake_python(tmp: Path, version: str, ensurepip: bool) -> str:
    script = tmp / "python3-fake"
    script.write_text(f"#!/bin/sh\necho {version} {'yes' if ensurepip else 'no'}\n")
    script.chmod(0o755)
    return str(script)


def test_rhel9_python_39_fails_clearly(tmp_path):
    run = _preflight(tmp_path, [H200, H200],
                     appliance_preflight_python=_fake_python(tmp_path, "3.9", True))  # fmt: skip
    assert run.returncode != 0
    assert "on gpu-0 is Python 3.9, the appliance needs 3.10 or newer" in run.output
    assert "dnf install python3.11" in run.output


def test_python_without_ensurepip_fails_clearly(tmp_path):
    run = _preflight(tmp_path, [H200, H200],
                     appliance_preflight_python=_fake_python(tmp_path, "3.11", False))  # fmt: skip
    assert run.returncode != 0
    assert "on gpu-0 has no ensurepip" in run.output
    assert "apt-get install python3-venv" in run.output and "(python3.11-venv)" in run.output


def test_missing_python_fails_clearly(tmp_path):
    run = _preflight(tmp_path, [H200, H200], appliance_preflight_python="/nonexistent/python3")
    assert run.returncode != 0
    assert "/nonexistent/python3 does not run on gpu-0" in run.output


def test_cpu_node_checks_python_too(tmp_path):
    run = _preflight(tmp_path, None, appliance_preflight_device="cpu",
                     appliance_preflight_python=_fake_python(tmp_path, "3.9", True))  # fmt: skip
    assert run.returncode != 0
    assert "on gpu-0 is Python 3.9" in run.output


def test_old_driver_fails_clearly(tmp_path):
    old = "NVIDIA H200, 143771 MiB, 550.54.15"
    run = _preflight(tmp_path, [old, old])
    assert run.returncode != 0
    assert "NVIDIA driver 550.54.15 on gpu-0 is older than 575.51.03" in run.output
    assert "install driver 575.51.03 or newer" in run.output


def _fabric(tmp: Path, *, ib: bool, peermem: bool, gdrcopy: bool) -> dict[str, object]:
    """A two-node plan with fake /sys/class/infiniband, nvidia_peermem and /dev/gdrdrv."""
    fabric = tmp / "fabric"
    (fabric / "infiniband").mkdir(parents=True)
    if ib:
        (fabric / "infiniband" / "mlx5_0").write_text("")
    if peermem:
        (fabric / "nvidia_peermem").mkdir()
    if gdrcopy:
        (fabric / "gdrdrv").write_text("")
    return {
        "appliance_preflight_nodes": 2,
        "appliance_preflight_infiniband_dir": str(fabric / "infiniband"),
        "appliance_preflight_peermem_dir": str(fabric / "nvidia_peermem"),
        "appliance_preflight_gdrcopy_device": str(fabric / "gdrdrv"),
    }


def test_multi_node_with_the_fabric_passes(tmp_path):
    run = _preflight(
        tmp_path, [H200, H200], **_fabric(tmp_path, ib=True, peermem=True, gdrcopy=True)
    )
    assert run.returncode == 0, run.output


@pytest.mark.parametrize(
    ("missing", "message", "fix"),
    [
        ("ib", "no InfiniBand/RoCE device on gpu-0", "ibv_devinfo"),
        (
            "peermem",
            "the nvidia_peermem kernel module is not loaded on gpu-0",
            "modprobe nvidia_peermem",
        ),
        ("gdrcopy", "gdrcopy is missing on gpu-0", "modprobe gdrdrv"),
    ],
)
def test_multi_node_without_the_fabric_fails_clearly(tmp_path, missing, message, fix):
    present = {"ib": True, "peermem": True, "gdrcopy": True, missing: False}
    run = _preflight(tmp_path, [H200, H200], **_fabric(tmp_path, **present))
    assert run.returncode != 0
    assert message in run.output and fix in run.output


def test_single_node_skips_the_fabric(tmp_path):
    fabric = _fabric(tmp_path, ib=False, peermem=False, gdrcopy=False)
    run = _preflight(tmp_path, [H200, H200], **{**fabric, "appliance_preflight_nodes": 1})
    assert run.returncode == 0, run.output
