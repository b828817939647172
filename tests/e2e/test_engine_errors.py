"""A real vLLM that fails to start: the supervisor reports vLLM's own reason."""

from __future__ import annotations

import os

import pytest

from appliance.engine import EngineSupervisor, LaunchSpec
from appliance.errors import EngineStartError
from tests.e2e.conftest import DEV_MODEL_DIR
from tests.support.servers import free_port

pytestmark = pytest.mark.e2e


def test_start_failure_surfaces_the_engine_error(tmp_path) -> None:
    from appliance.modelstore import prepare_dev_model

    prepare_dev_model(DEV_MODEL_DIR)
    spec = LaunchSpec(
        model_dir=DEV_MODEL_DIR,
        served_model_name="broken",
        port=free_port(),
        api_key="x",
        dtype="float32",
        max_model_len=10_000_000,  # far beyond the model's 8192 positions
    )
    supervisor = EngineSupervisor(
        spec, log_path=tmp_path / "engine.log", base_env=dict(os.environ), startup_timeout_s=600
    )
    with pytest.raises(EngineStartError) as caught:
        supervisor.start()
    message = str(caught.value)
    assert "exited with code" in message
    assert "max_model_len" in message or "max-model-len" in message
    assert not supervisor.is_running()
