"""What the image specs promise (scripts/images/specs.py; docs/images.md): the gateway
image's default configuration is valid for the settings schema, and the CPU engine
image starts vLLM's serve CLI through the appliance's launcher, with the venv's
python first on PATH (the Helm chart runs `python3 -m appliance.engine.vllm_cli`)."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from appliance.config import Settings

SCRIPTS = Path(__file__).resolve().parents[3] / "scripts"
if str(SCRIPTS) not in sys.path:  # scripts/build_images.py imports its helpers the same way
    sys.path.insert(0, str(SCRIPTS))

from images.specs import IMAGES, VENV_BIN  # noqa: E402


def _env(name: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in IMAGES[name].env)


def test_gateway_image_config_is_valid_and_listens_on_the_pod() -> None:
    (name, text), *_ = IMAGES["gateway"].config_files
    assert name == "appliance.yaml"
    assert _env("gateway")["APPLIANCE_CONFIG"] == f"/etc/appliance/{name}"
    settings = Settings(**yaml.safe_load(text))
    assert str(settings.data_dir) in IMAGES["gateway"].writable
    assert (settings.gateway.host, settings.gateway.port) == ("0.0.0.0", 8000)


def test_engine_image_runs_vllm_serve_through_the_launcher() -> None:
    spec = IMAGES["engine-cpu"]
    assert spec.entrypoint == (f"{VENV_BIN}/python", "-m", "appliance.engine.vllm_cli", "serve")
    assert spec.cmd == ()  # the model directory comes first, then vllm serve flags


def test_venv_comes_first_on_path_in_both_images() -> None:
    for name in IMAGES:
        assert _env(name)["PATH"].split(":")[0] == VENV_BIN, name


def test_engine_image_is_offline_by_default() -> None:
    env = _env("engine-cpu")
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "VLLM_NO_USAGE_STATS", "DO_NOT_TRACK"):
        assert env[name] == "1", name
