"""Run the capacity planner for an Ansible inventory: ``make deploy`` calls this first.

Reads the inventory with ``ansible-inventory --list``; the ``appliance_engine`` group's
hosts are the nodes (rank 0, or the first host, is the head) and these variables say
what to plan (set them on the group):

    appliance_plan_model          model profile, e.g. deepseek-v3
    appliance_plan_gpu            GPU type, e.g. h200 (``appliance plan --help``)
    appliance_plan_gpus_per_node  GPUs per node (default 8)
    appliance_plan_args           more planner options, e.g. ["--goal", "throughput"]
    appliance_model_store_dir     where models live on the nodes (default /models)

Writes ``appliance plan --format ansible-vars`` to ``--output``; exits 2 with the
planner's reasons when the model does not fit.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ENGINE_GROUP = "appliance_engine"


def _inventory(path: Path, bin_dir: Path) -> dict[str, Any]:
    result = subprocess.run(
        [str(bin_dir / "ansible-inventory"), "-i", str(path), "--list"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        sys.exit(f"cannot read inventory {path}:\n{result.stderr.strip()}")
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def _group_hosts(data: dict[str, Any], group: str) -> list[str]:
    entry = data.get(group, {})
    hosts = list(entry.get("hosts", []))
    for child in entry.get("children", []):
        hosts += [host for host in _group_hosts(data, child) if host not in hosts]
    return hosts


def planner_argv(data: dict[str, Any]) -> list[str]:
    """The ``appliance plan`` arguments the inventory asks for."""
    hosts = _group_hosts(data, ENGINE_GROUP)
    if not hosts:
        sys.exit(f"the inventory has no hosts in the {ENGINE_GROUP} group (the GPU nodes)")
    hostvars = data.get("_meta", {}).get("hostvars", {})

    def rank(host: str) -> int:
        return int(hostvars.get(host, {}).get("appliance_engine_node_rank", hosts.index(host)))

    ranked = sorted(hosts, key=rank)
    head = hostvars.get(ranked[0], {})
    missing = [key for key in ("appliance_plan_model", "appliance_plan_gpu") if key not in head]
    if missing:
        sys.exit(
            f"set {' and '.join(missing)} on the {ENGINE_GROUP} group of the inventory "
            "(see ansible/inventory/example.yml)"
        )
    model = str(head["appliance_plan_model"])
    store = str(head.get("appliance_model_store_dir", "/models")).rstrip("/")
    argv = [
        "--model", model,
        "--gpu", str(head["appliance_plan_gpu"]),
        "--gpus-per-node", str(head.get("appliance_plan_gpus_per_node", 8)),
        "--nodes", str(len(hosts)),
        "--model-path", f"{store}/{model}",
    ]  # fmt: skip
    if len(hosts) > 1:
        argv += ["--master-addr", str(head.get("ansible_host", ranked[0]))]
    argv += [str(arg) for arg in head.get("appliance_plan_args", [])]
    return argv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inventory", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--bin-dir", type=Path, default=Path(sys.executable).parent)
    args = parser.parse_args()
    argv = planner_argv(_inventory(args.inventory, args.bin_dir))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    command = [str(args.bin_dir / "appliance"), "plan", *argv, "--format", "ansible-vars",
               "--output", str(args.output)]  # fmt: skip
    print("planning:", "appliance plan", " ".join(argv), file=sys.stderr)
    sys.exit(subprocess.run(command, check=False).returncode)


if __name__ == "__main__":
    main()
