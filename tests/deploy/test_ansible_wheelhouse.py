"""Ansible installs offline (issue 14): the gateway role's install step, run for real on
this machine inside a network namespace with no route out, installs the release
wheelhouse's ``gateway`` set with ``--no-index --require-hashes``; a wheel whose hash
differs is refused; without a wheelhouse the role refuses to reach an index."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from appliance.release.wheelhouse import Target, build_wheelhouse
from tests.deploy.ansible_harness import REPO, ansible_available, local_inventory, run_playbook

pytestmark = pytest.mark.skipif(not ansible_available(), reason="ansible-core is not installed")


def no_route_out() -> bool:
    return subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheelhouse") / "wheelhouse"
    build_wheelhouse(out, source=REPO, sets=["gateway"], target=Target())
    return out


def install_playbook(tmp: Path) -> Path:
    playbook = tmp / "install.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Gateway install step only",
                    "hosts": "appliance_gateway",
                    "gather_facts": False,
                    "tasks": [
                        {
                            "name": "Run the role's install tasks",
                            "ansible.builtin.include_role": {
                                "name": "appliance_gateway",
                                "tasks_from": "install.yml",
                            },
                        }
                    ],
                }
            ]
        )
    )
    return playbook


def run_install(tmp: Path, **variables: object) -> tuple[int, str, Path]:
    inventory = local_inventory(
        tmp, {"appliance_gateway": {"gw": {}}}, appliance_gateway_install=True, **variables
    )
    playbook = install_playbook(tmp)
    # The namespace has loopback only: pip could not reach an index even if it tried.
    wrapper = ["unshare", "-n"] if no_route_out() else None
    result = run_playbook(playbook, inventory, timeout=600, wrapper=wrapper)
    return result.returncode, result.output, tmp / "root" / "gw"


@pytest.mark.skipif(not no_route_out(), reason="unshare -n needs root (network namespace)")
def test_the_gateway_role_installs_from_the_wheelhouse_with_no_route_out(
    wheelhouse: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    code, output, root = run_install(
        tmp_path, appliance_wheelhouse=str(wheelhouse), appliance_gateway_venv=str(venv)
    )
    assert code == 0, output[-3000:]
    installed = root / str(venv).lstrip("/")
    assert (installed / "bin" / "appliance").exists(), output[-2000:]
    copied = root / "var/lib/appliance/wheelhouse"
    assert {p.name for p in copied.glob("*.whl")} == set(
        (wheelhouse / "wheels-gateway.txt").read_text().split()
    )
    help_text = subprocess.run(
        [str(installed / "bin" / "appliance"), "--help"], capture_output=True, text=True
    )
    assert help_text.returncode == 0 and "bundle" in help_text.stdout


@pytest.mark.skipif(not no_route_out(), reason="unshare -n needs root (network namespace)")
def test_a_wheel_whose_hash_differs_is_refused(wheelhouse: Path, tmp_path: Path) -> None:
    tampered = tmp_path / "tampered"
    shutil.copytree(wheelhouse, tampered)
    (wheel,) = tampered.glob("sovereign_appliance-*.whl")
    data = bytearray(wheel.read_bytes())
    data[-10] ^= 0xFF
    wheel.write_bytes(bytes(data))
    code, output, _root = run_install(
        tmp_path, appliance_wheelhouse=str(tampered), appliance_gateway_venv=str(tmp_path / "v")
    )
    assert code != 0
    assert "DO NOT MATCH THE HASHES" in output, output[-3000:]


def test_without_a_wheelhouse_the_role_refuses_the_index(tmp_path: Path) -> None:
    code, output, _root = run_install(tmp_path, appliance_gateway_venv=str(tmp_path / "v"))
    assert code != 0
    assert "No wheelhouse: set appliance_wheelhouse" in output, output[-2000:]
