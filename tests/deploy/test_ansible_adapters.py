"""Adapters and the embedding engine on the Ansible path (issue #16): appliance_model_store
places each adapter on engine and gateway hosts and verifies it against its manifest and
the approved sha256; the engine unit gets vLLM's LoRA flags; the head runs
appliance-embedding-engine.service; the gateway's settings route the embedding model and
find the adapter catalogue. ``connection: local`` under a temporary root."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from appliance.adapters import import_adapter
from appliance.config import Settings
from appliance.engine.launch import Pooling
from appliance.gateway.adapter_models import load_adapter_catalog
from tests.deploy.ansible_harness import (
    ansible_available,
    local_inventory,
    plan_vars,
    run_playbook,
    unit_directives,
)
from tests.support.fake_adapters import DEV_BASE, write_adapter, write_base

pytestmark = pytest.mark.skipif(not ansible_available(), reason="ansible-core not installed")

ADAPTERS = "var/lib/appliance/models/adapters/smollm2-135m-instruct"
STORE_VARS = """\
      appliance_model_store_method: local
      appliance_model_store_model: smollm2-135m-instruct
      appliance_model_store_target: /models/smollm2-135m-instruct
"""
PLAYBOOK = f"""\
- name: Weights and adapters on the engine hosts
  hosts: appliance_engine
  gather_facts: false
  vars:
{STORE_VARS}  roles:
    - role: appliance_model_store
- name: Adapters on the gateway hosts
  hosts: appliance_gateway
  gather_facts: false
  vars:
      appliance_model_store_weights: false
{STORE_VARS}  roles:
    - role: appliance_model_store
- name: Engines
  hosts: appliance_engine
  gather_facts: false
  roles:
    - role: appliance_engine
- name: Gateway
  hosts: appliance_gateway
  gather_facts: false
  roles:
    - role: appliance_gateway
"""


def _stage(tmp: Path) -> tuple[Path, str]:
    """A staging store as `appliance models import` and `adapters import` leave it."""
    staging = tmp / "staging"
    write_base(staging)
    imported = import_adapter(write_adapter(tmp / "src", rank=8), staging, "legal-v1",
                              base=DEV_BASE, teams=["legal"], trust_source=True)  # fmt: skip
    return staging, imported.adapter.manifest_sha256


def _deploy(tmp: Path, staging: Path, adapters: list[dict[str, Any]], **variables: Any) -> Any:
    plan = plan_vars(tmp, "-m", "smollm2-135m-instruct", "--gpu", "cpu", "--gpus-per-node", "1")
    inventory = local_inventory(
        tmp,
        {
            "appliance_engine": {"gpu-0": {"ansible_host": "10.0.10.10"}},
            "appliance_gateway": {"gw": {}},
        },
        appliance_engine_api_key="s3cret",
        appliance_gateway_tls_mode="none",
        appliance_gateway_migrate=False,
        appliance_model_store_source=str(staging),
        appliance_adapters=adapters,
        **variables,
    )
    playbook = tmp / "site.yml"
    playbook.write_text(PLAYBOOK, encoding="utf-8")
    return run_playbook(playbook, inventory, "-e", f"@{plan}", timeout=300)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("adapters")
    staging, sha = _stage(tmp)
    run = _deploy(
        tmp, staging, [{"name": "legal-v1", "rank": 8, "manifest_sha256": sha}],
        appliance_engine_embedding_enabled=True,
    )  # fmt: skip
    assert run.returncode == 0, run.output
    return tmp / "root", sha


def _argv(unit: str) -> list[str]:
    (line,) = unit_directives(unit)["ExecStart"]
    return shlex.split(line)


def test_adapter_is_placed_on_engine_and_gateway_hosts(deployed: tuple[Path, str]) -> None:
    root, _ = deployed
    for host in ("gpu-0", "gw"):
        placed = root / host / ADAPTERS / "legal-v1"
        assert {p.name for p in placed.iterdir()} >= {
            "adapter_config.json", "adapter_model.safetensors", "appliance-adapter.json",
            "MANIFEST.sha256",
        }  # fmt: skip
    # Only the engine host gets the weights.
    assert (root / "gpu-0/models/smollm2-135m-instruct/config.json").exists()
    assert not (root / "gw/models").exists()


def test_engine_unit_serves_the_adapter(deployed: tuple[Path, str]) -> None:
    root, _ = deployed
    unit = (root / "gpu-0/etc/systemd/system/appliance-engine-head.service").read_text()
    argv = _argv(unit)
    lora = argv[argv.index("--enable-lora") :]
    assert lora[:5] == ["--enable-lora", "--max-loras", "1", "--max-lora-rank", "8"]
    assert lora[5] == "--lora-modules"
    assert json.loads(lora[6]) == {
        "name": "smollm2-135m-instruct:legal-v1",
        "path": f"/{ADAPTERS}/legal-v1",
        "base_model_name": "smollm2-135m-instruct",
    }
    environment = unit_directives(unit)["Environment"]
    assert not any(e.startswith("VLLM_ALLOW_RUNTIME_LORA_UPDATING") for e in environment)


def test_head_runs_the_embedding_engine(deployed: tuple[Path, str]) -> None:
    root, _ = deployed
    etc = root / "gpu-0/etc"
    unit = (etc / "systemd/system/appliance-embedding-engine.service").read_text()
    argv = _argv(unit)
    assert argv[2:5] == ["appliance.engine.vllm_cli", "serve", "/models/smollm2-135m-instruct"]
    for flag, value in (("--served-model-name", "smollm2-135m-embed"), ("--port", "8101"),
                        ("--max-model-len", "512"), ("--dtype", "float32")):  # fmt: skip
        assert argv[argv.index(flag) + 1] == value
    pooling = Pooling().args()
    start = argv.index("--runner")
    assert argv[start : start + len(pooling) - 1] == pooling[:-1]
    assert json.loads(argv[start + len(pooling) - 1]) == json.loads(pooling[-1])
    environment = dict(e.split("=", 1) for e in unit_directives(unit)["Environment"])
    assert environment["HF_HUB_OFFLINE"] == "1" and environment["VLLM_NO_USAGE_STATS"] == "1"
    env_file = etc / "appliance/embedding-engine.env"
    assert env_file.stat().st_mode & 0o777 == 0o600
    lines = env_file.read_text().splitlines()
    assert "VLLM_API_KEY=s3cret" in lines and "VLLM_HOST_IP=127.0.0.1" in lines
    assert "VLLM_CPU_KVCACHE_SPACE=1" in lines


def test_gateway_routes_the_embedding_model_and_finds_the_catalogue(
    deployed: tuple[Path, str],
) -> None:
    root, sha = deployed
    config = yaml.safe_load((root / "gw/etc/appliance/appliance.yaml").read_text())
    settings = Settings.model_validate(config)
    assert [(u.model, u.url, u.kind) for u in settings.effective_upstreams()] == [
        ("smollm2-135m-instruct", "http://10.0.10.10:8100", "chat"),
        ("smollm2-135m-embed", "http://10.0.10.10:8101", "embedding"),
    ]
    # The catalogue as the gateway reads it, from where the role placed the adapters.
    config["data_dir"] = str(root / "gw/var/lib/appliance")
    config["engine"]["model_dir"] = str(root / "gw/var/lib/appliance/models/smollm2-135m-instruct")
    catalog = load_adapter_catalog(Settings.model_validate(config))
    served = catalog.adapters["smollm2-135m-instruct:legal-v1"]
    assert served.teams == {"legal"} and served.manifest_sha256 == sha


def test_off_by_default(tmp_path: Path) -> None:
    staging, _ = _stage(tmp_path)
    run = _deploy(tmp_path, staging, [])
    assert run.returncode == 0, run.output
    root = tmp_path / "root"
    unit = (root / "gpu-0/etc/systemd/system/appliance-engine-head.service").read_text()
    assert "--enable-lora" not in _argv(unit)
    assert not (root / "gpu-0/etc/systemd/system/appliance-embedding-engine.service").exists()
    assert not (root / "gw" / ADAPTERS).exists()
    config = yaml.safe_load((root / "gw/etc/appliance/appliance.yaml").read_text())
    assert [u["model"] for u in config["gateway"]["upstreams"]] == ["smollm2-135m-instruct"]
    assert "model_dir" not in config["engine"]


def test_runtime_updates_opt_in(tmp_path: Path) -> None:
    staging, sha = _stage(tmp_path)
    run = _deploy(tmp_path, staging, [{"name": "legal-v1", "rank": 8, "manifest_sha256": sha}],
                  appliance_engine_lora_runtime_updates=True,
                  appliance_engine_max_lora_rank=20, appliance_engine_max_loras=3)  # fmt: skip
    assert run.returncode == 0, run.output
    unit = (tmp_path / "root/gpu-0/etc/systemd/system/appliance-engine-head.service").read_text()
    argv = _argv(unit)
    assert argv[argv.index("--max-loras") + 1] == "3"
    assert argv[argv.index("--max-lora-rank") + 1] == "32"
    assert "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True" in unit_directives(unit)["Environment"]


def test_an_adapter_other_than_the_approved_one_is_refused(tmp_path: Path) -> None:
    staging, sha = _stage(tmp_path)
    wrong = _deploy(
        tmp_path, staging, [{"name": "legal-v1", "rank": 8, "manifest_sha256": "0" * 64}]
    )
    assert wrong.returncode != 0 and "not the approved" in wrong.output
    # A weight changed after import: the manifest still matches, a file does not.
    weights = staging / "adapters" / DEV_BASE / "legal-v1" / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    tampered = _deploy(tmp_path, staging, [{"name": "legal-v1", "rank": 8, "manifest_sha256": sha}])
    assert tampered.returncode != 0 and "does not match its MANIFEST.sha256" in tampered.output
