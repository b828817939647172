"""The egress role's nftables table, loaded for real in a throwaway network namespace:
traffic to the listed networks leaves, everything else is dropped (the kernel answers a
local sender whose packet the output hook drops with EPERM); an external provider is
reached by the gateway's user alone, on its port."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.ansible_harness import (
    ansible_available,
    local_inventory,
    plan_vars,
    run_playbook,
    unit_directives,
)

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


def _render(tmp: Path, **variables: Any) -> Path:
    inventory = local_inventory(
        tmp,
        {"appliance_gateway": {"gw": {}}},
        **{"appliance_egress_lockdown_allowed_networks": ["10.0.0.0/8"], **variables},
    )
    playbook = tmp / "egress.yml"
    playbook.write_text(PLAYBOOK, encoding="utf-8")
    run = run_playbook(playbook, inventory)
    assert run.returncode == 0, run.output
    return tmp / "root/gw/etc/nftables.d/appliance-egress.nft"


def test_refuses_an_empty_allow_list(tmp_path: Path) -> None:
    inventory = local_inventory(tmp_path, {"appliance_gateway": {"gw": {}}})
    playbook = tmp_path / "egress.yml"
    playbook.write_text(PLAYBOOK, encoding="utf-8")
    run = run_playbook(playbook, inventory)
    assert run.returncode != 0
    assert "appliance_egress_lockdown_allowed_networks is empty" in run.output


def _rule_lines(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def test_own_table_own_unit_never_flushes_the_ruleset(tmp_path: Path) -> None:
    rules = _render(tmp_path)
    lines = _rule_lines(rules.read_text())
    assert not [ln for ln in lines if re.match(r"flush\s+ruleset", ln)], lines
    # Only our table is replaced: declared, deleted and defined in one transaction.
    assert lines[:3] == [
        "table inet appliance_egress",
        "delete table inet appliance_egress",
        "table inet appliance_egress {",
    ]
    # Every top-level command names our table and no other.
    commands = [ln for ln in lines if ln.split()[0] in {"table", "delete", "flush", "add"}]
    assert all(re.match(r"\w+( table)? inet appliance_egress( \{)?$", ln) for ln in commands), (
        commands
    )
    unit = (tmp_path / "root/gw/etc/systemd/system/appliance-egress.service").read_text()
    directives = unit_directives(unit)
    assert directives["ExecStart"] == ["/usr/sbin/nft -f /etc/nftables.d/appliance-egress.nft"]
    assert "nftables.conf" not in "".join(_rule_lines(unit))
    # The boot-time /etc/nftables.conf (which flushes the ruleset) is not written.
    assert not (tmp_path / "root/gw/etc/nftables.conf").exists()
    if shutil.which("nft"):
        checked = subprocess.run(["nft", "-c", "-f", str(rules)], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("unshare"),
    reason="needs root, nft and unshare (network namespaces)",
)
def test_loading_our_table_keeps_other_agents_tables(tmp_path: Path) -> None:
    """In a fresh network namespace: another agent's table is loaded first; ours is
    loaded twice (first run and a reload); the other table and its rule survive."""
    rules = _render(tmp_path)
    script = f"""
    set -e
    nft add table inet other_agent
    nft add chain inet other_agent keep '{{ type filter hook input priority 0; policy accept; }}'
    nft add rule inet other_agent keep tcp dport 22 counter accept
    nft -f {rules}
    nft -f {rules}
    nft list ruleset
    """
    result = subprocess.run(["unshare", "-n", "sh", "-c", script], capture_output=True,
                            text=True, timeout=30)  # fmt: skip
    if result.returncode != 0 and "Operation not permitted" in result.stderr:
        pytest.skip("cannot create a network namespace here")
    assert result.returncode == 0, result.stderr
    listing = result.stdout
    assert "table inet other_agent" in listing
    assert "tcp dport 22 counter" in listing
    assert listing.count("table inet appliance_egress") == 1
    assert listing.count("chain output") == 1 and "policy drop" in listing


def _netns(name: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", name, *argv], capture_output=True, text=True, timeout=30
    )


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("ip"),
    reason="needs root, nft and ip (network namespaces)",
)
def test_rules_drop_everything_but_the_listed_networks(tmp_path: Path) -> None:
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


# -- external providers (issue #17): only the gateway's user reaches them -------------

TCP_CONNECT = """\
import errno, select, socket, sys
address, port = sys.argv[1].rsplit(":", 1)
with socket.socket() as sock:
    sock.setblocking(False)
    code = sock.connect_ex((address, int(port)))
    if code == errno.EINPROGRESS and select.select([], [sock], [], float(sys.argv[2]))[1]:
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    print(errno.errorcode.get(code, code) if code else "connected")
"""
# The far ends listen on nothing: a SYN that left the host comes back refused (RST).
LEFT = {"ECONNREFUSED", "connected"}
# TCP hides an output drop from connect() (the SYN is retried), so no answer at all
# (EPERM if a kernel ever reports it) and a rise of the final drop's counter.
DROPPED = {"EINPROGRESS", "EPERM"}

DIRECT: dict[str, Any] = {
    "name": "partner",
    "base_url": "https://llm.example:8443/v1",
    "egress": {"cidrs": ["192.0.2.0/24"]},
}
VIA_PROXY: dict[str, Any] = {
    **DIRECT,
    "egress": {"proxy_url": "http://10.9.0.10:3128", "proxy_cidrs": ["10.9.0.10/32"]},
}
# (sender, target, leaves): "user" is the gateway's user, "root" any other.
INTERNAL = [("user", "10.1.0.2:80", True), ("root", "10.1.0.2:80", True)]
PROVIDER_CASES = {
    "direct": (DIRECT, [
        ("user", "192.0.2.2:8443", True),
        ("user", "192.0.2.2:443", False),  # the provider's port only
        ("user", "198.51.100.2:8443", False),  # its CIDRs only
        ("user", "10.9.0.10:3128", False),
        ("root", "192.0.2.2:8443", False),  # the gateway's user only
        *INTERNAL,
    ]),
    "proxy": (VIA_PROXY, [
        ("user", "10.9.0.10:3128", True),
        ("user", "10.9.0.10:443", False),
        ("user", "192.0.2.2:3128", False),  # the proxy's address only
        ("user", "192.0.2.2:8443", False),  # not around the proxy
        ("root", "10.9.0.10:3128", False),
        *INTERNAL,
    ]),
}  # fmt: skip


def _final_drops(name: str) -> int:
    chain = _netns(name, "nft", "list", "chain", "inet", "appliance_egress", "output").stdout
    (count,) = re.findall(r"^\s*counter packets (\d+) bytes \d+ drop$", chain, re.M)
    return int(count)


@pytest.mark.skipif(
    os.geteuid() != 0 or not all(shutil.which(tool) for tool in ("nft", "ip", "setpriv")),
    reason="needs root, nft, ip and setpriv (network namespaces)",
)
@pytest.mark.parametrize("case", sorted(PROVIDER_CASES))
def test_providers_are_reached_by_the_gateway_user_only(tmp_path: Path, case: str) -> None:
    provider, checks = PROVIDER_CASES[case]
    # nobody exists everywhere (nft resolves the name at load time); no user is created.
    user = pwd.getpwnam("nobody")
    rules = _render(
        tmp_path,
        # Narrower than the proxy's address: only the provider's rule reaches it.
        appliance_egress_lockdown_allowed_networks=["10.1.0.0/24"],
        appliance_gateway_settings={"external_providers": [provider]},
        appliance_egress_lockdown_providers_user=user.pw_name,
        appliance_egress_lockdown_providers_create_user=False,
    )
    as_user = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
    host, peer = (f"appliance-{role}-{uuid.uuid4().hex[:8]}" for role in ("egress", "peer"))
    if subprocess.run(["ip", "netns", "add", host], capture_output=True).returncode != 0:
        pytest.skip("cannot create a network namespace here")
    try:
        assert subprocess.run(["ip", "netns", "add", peer], capture_output=True).returncode == 0
        # The far ends live in a second namespace that answers, so "left" is seen, not
        # assumed; no IPv6, whose multicast reports would also hit the final drop.
        for ns, *command in (
            (host, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"),
            (host, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"),
            (host, "ip", "link", "add", "internal", "type", "veth", "peer", "name", "in-peer"),
            (host, "ip", "link", "add", "outside", "type", "veth", "peer", "name", "out-peer"),
            (host, "ip", "link", "set", "in-peer", "netns", peer),
            (host, "ip", "link", "set", "out-peer", "netns", peer),
            (host, "ip", "addr", "add", "10.1.0.1/24", "dev", "internal"),
            (host, "ip", "addr", "add", "192.0.2.1/24", "dev", "outside"),
            (peer, "ip", "addr", "add", "10.1.0.2/24", "dev", "in-peer"),
            (peer, "ip", "addr", "add", "192.0.2.2/24", "dev", "out-peer"),
            (peer, "ip", "addr", "add", "198.51.100.2/24", "dev", "out-peer"),  # elsewhere
            (peer, "ip", "addr", "add", "10.9.0.10/32", "dev", "out-peer"),  # the proxy
            *((ns, "ip", "link", "set", link, "up") for ns, link in (
                (host, "lo"), (host, "internal"), (host, "outside"),
                (peer, "lo"), (peer, "in-peer"), (peer, "out-peer"),
            )),
            (host, "ip", "route", "add", "198.51.100.0/24", "via", "192.0.2.2"),
            (host, "ip", "route", "add", "10.9.0.10/32", "via", "192.0.2.2"),
        ):  # fmt: skip
            done = _netns(ns, *command)
            assert done.returncode == 0, (command, done.stderr)

        def connect(sender: str, target: str, wait: float) -> str:
            argv = [*(as_user if sender == "user" else []), sys.executable, "-c", TCP_CONNECT]
            sent = _netns(host, *argv, target, str(wait))
            assert sent.returncode == 0, sent.stderr
            return sent.stdout.strip()

        # Before the table every target answers, for both senders.
        before = {(s, t): connect(s, t, 5) for s, t, _ in checks}
        assert set(before.values()) <= LEFT, before

        loaded = _netns(host, "nft", "-f", str(rules))
        assert loaded.returncode == 0, loaded.stderr
        for sender, target, leaves in checks:
            drops = _final_drops(host)
            outcome = connect(sender, target, 5 if leaves else 1)
            if leaves:
                assert outcome in LEFT, (sender, target, outcome)
            else:
                assert outcome in DROPPED, (sender, target, outcome)
                assert _final_drops(host) > drops, (sender, target)
    finally:
        for ns in (host, peer):
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)


# -- torch.distributed/NCCL confined to the private interface --------------------------

ENGINES_THEN_EGRESS = """\
- name: Engines
  hosts: appliance_engine
  gather_facts: false
  roles:
    - role: appliance_engine
- name: Egress
  hosts: all
  gather_facts: true
  gather_subset: [min]
  roles:
    - role: appliance_egress_lockdown
"""

CONNECT = """\
import socket, sys, time
address, port = sys.argv[1].rsplit(":", 1)
with socket.socket() as sock:
    sock.setblocking(False)
    sock.connect_ex((address, int(port)))  # the SYN goes out (or is dropped) now
    time.sleep(0.2)
"""


def _two_node_rules(tmp: Path) -> tuple[str, str]:
    """The egress tables of a two-node plan's head and of the gateway host."""
    plan = plan_vars(tmp, "-m", "deepseek-v3", "--gpu", "h100", "--nodes", "2")
    engine = {"appliance_engine_network_interface": "backend0"}
    inventory = local_inventory(
        tmp,
        {
            "appliance_engine": {
                "gpu-0": {"ansible_host": "10.1.0.10", **engine},
                "gpu-1": {"ansible_host": "10.1.0.11", **engine},
            },
            "appliance_gateway": {"gw": {}},
        },
        appliance_engine_api_key="k",
        appliance_egress_lockdown_allowed_networks=["10.0.0.0/8"],
    )
    playbook = tmp / "site.yml"
    playbook.write_text(ENGINES_THEN_EGRESS, encoding="utf-8")
    run = run_playbook(playbook, inventory, "-e", f"@{plan}")
    assert run.returncode == 0, run.output
    table = "etc/nftables.d/appliance-egress.nft"
    return (tmp / "root/gpu-0" / table).read_text(), (tmp / "root/gw" / table).read_text()


def test_engine_distributed_ports_pass_only_on_the_private_interface(tmp_path: Path) -> None:
    head, gateway = _two_node_rules(tmp_path)
    # The planner's --master-port (and --data-parallel-rpc-port, for DP plans) from this
    # node's own arguments.
    (elements,) = [ln for ln in head.splitlines() if "elements" in ln and "29501" in ln]
    assert set(elements.split("{")[1].split("}")[0].replace(",", " ").split()) <= {
        "29501",
        "13345",
    }
    assert 'tcp dport @private_ports iifname != "backend0" counter drop' in head
    assert 'tcp dport @private_ports oifname != "backend0" counter drop' in head
    # The gateway host runs no engine: no such rule there.
    assert "private_ports" not in gateway
    if shutil.which("nft"):
        checked = subprocess.run(["nft", "-c", "-f", "/dev/stdin"], input=head, text=True,
                                 capture_output=True)  # fmt: skip
        assert checked.returncode == 0, checked.stderr


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("ip"),
    reason="needs root, nft and ip (network namespaces)",
)
def test_distributed_traffic_leaves_only_through_the_private_interface(tmp_path: Path) -> None:
    head, _ = _two_node_rules(tmp_path)
    rules = tmp_path / "head.nft"
    rules.write_text(head, encoding="utf-8")
    name = f"appliance-nccl-{uuid.uuid4().hex[:8]}"
    if subprocess.run(["ip", "netns", "add", name], capture_output=True).returncode != 0:
        pytest.skip("cannot create a network namespace here")
    try:
        for command in (
            ["ip", "link", "set", "lo", "up"],
            # Both networks are internal (allowed outbound); only backend0 is private.
            ["ip", "link", "add", "backend0", "type", "veth", "peer", "name", "backend0-peer"],
            ["ip", "link", "add", "frontend0", "type", "veth", "peer", "name", "frontend0-peer"],
            ["ip", "addr", "add", "10.1.0.1/24", "dev", "backend0"],
            ["ip", "addr", "add", "10.2.0.1/24", "dev", "frontend0"],
            ["ip", "link", "set", "backend0", "up"],
            ["ip", "link", "set", "backend0-peer", "up"],
            ["ip", "link", "set", "frontend0", "up"],
            ["ip", "link", "set", "frontend0-peer", "up"],
            ["ip", "neigh", "add", "10.1.0.2", "lladdr", "02:00:00:00:00:01", "dev", "backend0"],
            ["ip", "neigh", "add", "10.2.0.2", "lladdr", "02:00:00:00:00:02", "dev", "frontend0"],
        ):
            assert _netns(name, *command).returncode == 0, command
        loaded = _netns(name, "nft", "-f", str(rules))
        assert loaded.returncode == 0, loaded.stderr

        def dropped_after(target: str) -> int:
            """Packets the private-port rule of the output chain has dropped so far,
            after a TCP connection attempt to ``target``."""
            _netns(name, sys.executable, "-c", CONNECT, target)
            chain = _netns(name, "nft", "list", "chain", "inet", "appliance_egress", "output")
            (line,) = [ln for ln in chain.stdout.splitlines() if "@private_ports" in ln]
            return int(line.split("counter packets ")[1].split()[0])

        # TCP hides an output drop from connect() (the SYN is retried), so the rule's
        # counter tells: the private network passes, and so does the engine's API
        # port elsewhere; torch.distributed over another interface is dropped.
        assert dropped_after("10.1.0.2:29501") == 0
        assert dropped_after("10.2.0.2:8100") == 0
        assert dropped_after("10.2.0.2:29501") >= 1
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)
