"""The egress role's nftables table, loaded for real in a throwaway network namespace:
traffic to the listed networks leaves, everything else is dropped (the kernel answers a
local sender whose packet the output hook drops with EPERM)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.deploy.ansible_harness import ansible_available, local_inventory, run_playbook

pytestmark = pytest.mark.skipif(not ansible_available(), reason="ansible-core not installed")

PLAYBOOK = """\
- name: Egress
  hosts: all
  gather_facts: true
  gather_subset: [min]
  roles:
    - role: appliance_egress_lockdown
"""

SEND = """\
import socket, sys
for address in sys.argv[1:]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(b"x", (address, 9))
            print(address, "sent")
        except PermissionError:
            print(address, "dropped")
"""


def _render(tmp: Path) -> Path:
    inventory = local_inventory(
        tmp,
        {"appliance_gateway": {"gw": {}}},
        appliance_egress_lockdown_allowed_networks=["10.0.0.0/8"],
    )
    playbook = tmp / "egress.yml"
    playbook.write_text(PLAYBOOK, encoding="utf-8")
    run = run_playbook(playbook, inventory)
    assert run.returncode == 0, run.output
    return tmp / "root/gw/etc/nftables.d/appliance-egress.nft"


def test_refuses_an_empty_allow_list(tmp_path):
    inventory = local_inventory(tmp_path, {"appliance_gateway": {"gw": {}}})
    playbook = tmp_path / "egress.yml"
    playbook.write_text(PLAYBOOK, encoding="utf-8")
    run = run_playbook(playbook, inventory)
    assert run.returncode != 0
    assert "appliance_egress_lockdown_allowed_networks is empty" in run.output


def _netns(name: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", name, *argv], capture_output=True, text=True, timeout=30
    )


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("ip"),
    reason="needs root, nft and ip (network namespaces)",
)
def test_rules_drop_everything_but_the_listed_networks(tmp_path):
    rules = _render(tmp_path)
    name = f"appliance-egress-{uuid.uuid4().hex[:8]}"
    if subprocess.run(["ip", "netns", "add", name], capture_output=True).returncode != 0:
        pytest.skip("cannot create a network namespace here")
    try:
        for command in (
            ["ip", "link", "set", "lo", "up"],
            # Two links (veth pairs, the far ends idle) standing for an internal network
            # and the outside world.
            ["ip", "link", "add", "internal", "type", "veth", "peer", "name", "internal-peer"],
            ["ip", "link", "set", "internal", "up"],
            ["ip", "link", "set", "internal-peer", "up"],
            ["ip", "addr", "add", "10.1.0.1/24", "dev", "internal"],
            ["ip", "link", "add", "outside", "type", "veth", "peer", "name", "outside-peer"],
            ["ip", "link", "set", "outside", "up"],
            ["ip", "link", "set", "outside-peer", "up"],
            ["ip", "addr", "add", "192.0.2.1/24", "dev", "outside"],
            # Static neighbours, so sending needs no ARP answer.
            ["ip", "neigh", "add", "10.1.0.2", "lladdr", "02:00:00:00:00:01", "dev", "internal"],
            ["ip", "neigh", "add", "192.0.2.2", "lladdr", "02:00:00:00:00:02", "dev", "outside"],
        ):
            assert _netns(name, *command).returncode == 0, command
        before = _netns(name, sys.executable, "-c", SEND, "10.1.0.2", "192.0.2.2")
        assert before.stdout.split("\n")[:2] == ["10.1.0.2 sent", "192.0.2.2 sent"]

        loaded = _netns(name, "nft", "-f", str(rules))
        assert loaded.returncode == 0, loaded.stderr
        # Loading twice replaces the table rather than failing or duplicating it.
        assert _netns(name, "nft", "-f", str(rules)).returncode == 0

        after = _netns(name, sys.executable, "-c", SEND, "10.1.0.2", "192.0.2.2", "127.0.0.1")
        assert after.stdout.split("\n")[:3] == [
            "10.1.0.2 sent",
            "192.0.2.2 dropped",
            "127.0.0.1 sent",
        ], after.stdout + after.stderr
        listing = _netns(name, "nft", "list", "table", "inet", "appliance_egress").stdout
        assert listing.count("chain output") == 1 and "policy drop" in listing
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)
