"""`appliance plan -f ansible-vars` with stored adapters and an embedding engine, run
through the real roles (issue #16): the plan's variables alone place and verify the
adapter, give the engine unit one set of LoRA flags with the planned sizes, and start
the embedding engine with the planned flags. ``connection: local`` under a temporary
root."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from tests.deploy.ansible_harness import (
    ansible_available,
    local_inventory,
    plan_vars,
    run_playbook,
    unit_directives,
)
from tests.deploy.test_ansible_adapters import ADAPTERS, PLAYBOOK, _stage

pytestmark = pytest.mark.skipif(not ansible_available(), reason="ansible-core not installed")


def _argv(unit: Path) -> list[str]:
    (line,) = unit_directives(unit.read_text(encoding="utf-8"))["ExecStart"]
    return shlex.split(line)


def test_planned_adapters_and_embedding_engine_deploy(tmp_path: Path) -> None:
    staging, sha = _stage(tmp_path)
    plan = plan_vars(tmp_path, "-m", "smollm2-135m-instruct", "--gpu", "cpu",
                     "--gpus-per-node", "1", "--max-loras", "2", "--model-store", str(staging),
                     "--embedding-model", "smollm2-135m-instruct")  # fmt: skip
    inventory = local_inventory(
        tmp_path,
        {
            "appliance_engine": {"gpu-0": {"ansible_host": "10.0.10.10"}},
            "appliance_gateway": {"gw": {}},
        },
        appliance_engine_api_key="s3cret",
        appliance_gateway_tls_mode="none",
        appliance_gateway_migrate=False,
        appliance_model_store_source=str(staging),
    )
    playbook = tmp_path / "site.yml"
    playbook.write_text(PLAYBOOK, encoding="utf-8")
    run = run_playbook(playbook, inventory, "-e", f"@{plan}", timeout=300)
    assert run.returncode == 0, run.output
    root = tmp_path / "root"
    for host in ("gpu-0", "gw"):
        assert (root / host / ADAPTERS / "legal-v1" / "MANIFEST.sha256").is_file()
    argv = _argv(root / "gpu-0/etc/systemd/system/appliance-engine-head.service")
    assert argv.count("--enable-lora") == 1 and argv.count("--max-loras") == 1
    lora = argv[argv.index("--enable-lora") :]
    # --max-loras 2 as planned; the rank: the stored adapter's (8), as planned.
    assert lora[:6] == ["--enable-lora", "--max-loras", "2", "--max-lora-rank", "8",
                        "--lora-modules"]  # fmt: skip
    assert json.loads(lora[6])["name"] == "smollm2-135m-instruct:legal-v1"
    embedding = _argv(root / "gpu-0/etc/systemd/system/appliance-embedding-engine.service")
    for flag, value in (("--served-model-name", "smollm2-135m-embed"), ("--runner", "pooling"),
                        ("--max-num-batched-tokens", "8192"), ("--dtype", "float32")):  # fmt: skip
        assert embedding[embedding.index(flag) + 1] == value
    assert sha in plan.read_text(encoding="utf-8")
