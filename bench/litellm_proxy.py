"""LiteLLM's proxy in front of the benchmark's fake engine: its config file, its
environment and the command that starts it (`litellm --config ... --port ...`).

The config is the smallest that serves the fake as an OpenAI-compatible model behind a
master key, as LiteLLM's quick start has it: no database, no cache, LiteLLM's own
defaults otherwise (one worker, like `appliance serve`).
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

__all__ = ["HEALTH_PATH", "litellm_command", "litellm_env", "proxy_config", "start_litellm"]

# Answers once the server is up, without a key and without calling the model.
HEALTH_PATH = "/health/liveliness"


def proxy_config(upstream: str, model: str, engine_key: str, master_key: str) -> dict[str, Any]:
    """`upstream` is the fake engine's base URL (no /v1); clients ask for `model`."""
    return {
        "model_list": [
            {
                "model_name": model,
                "litellm_params": {
                    "model": f"openai/{model}",
                    "api_base": f"{upstream}/v1",
                    "api_key": engine_key,
                },
            }
        ],
        "general_settings": {"master_key": master_key},
    }


def litellm_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The proxy's environment: none of the product's settings or venv, and no start-up
    download (LiteLLM fetches its model price list from GitHub unless told not to; this
    machine has no network beyond PyPI)."""
    env = {
        k: v
        for k, v in environ.items()
        if not k.startswith(("APPLIANCE_", "LITELLM_"))
        and k not in ("VIRTUAL_ENV", "PYTHONPATH", "DATABASE_URL", "REDIS_URL")
    }
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    return env


def litellm_command(executable: Path, config: Path, port: int) -> list[str]:
    return [str(executable), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]


def start_litellm(
    executable: Path, work: Path, upstream: str, model: str, engine_key: str, port: int
) -> tuple[subprocess.Popen[bytes], str]:
    """Start the proxy (not waiting for it); returns the process and its master key."""
    master_key = f"sk-bench-{secrets.token_hex(16)}"  # LiteLLM wants the sk- prefix
    config = work / "litellm.yaml"
    config.write_text(yaml.safe_dump(proxy_config(upstream, model, engine_key, master_key)))
    log = work / "litellm.log"
    process = subprocess.Popen(
        litellm_command(executable, config, port),
        stdout=log.open("ab"), stderr=subprocess.STDOUT, env=litellm_env(os.environ), cwd=work,
    )  # fmt: skip
    return process, master_key
