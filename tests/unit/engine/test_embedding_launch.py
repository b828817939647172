"""appliance/engine/launch.py: the embedding engine's launch spec (vLLM's pooling
runner) from ``embedding_engine:``."""

from __future__ import annotations

import json
from pathlib import Path

from appliance.config import Settings
from appliance.engine import LaunchSpec, Pooling, embedding_spec_from_settings


def _flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_pooling_args_state_pooling_and_normalisation() -> None:
    args = Pooling().args()
    assert args[:4] == ["--runner", "pooling", "--convert", "embed"]
    assert json.loads(_flag(args, "--pooler-config")) == {
        "pooling_type": "LAST",
        "use_activation": True,
    }
    native = Pooling(convert="none", pooling_type=None, normalize=False).args()
    assert "--convert" not in native
    assert json.loads(_flag(native, "--pooler-config")) == {"use_activation": False}


def test_spec_from_settings(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, embedding_engine={"max_model_len": 256})
    spec = embedding_spec_from_settings(settings, "secret")
    argv = spec.argv()
    assert argv[argv.index("serve") + 1] == str(tmp_path.resolve() / "models/smollm2-135m-instruct")
    assert _flag(argv, "--served-model-name") == "smollm2-135m-embed"
    assert _flag(argv, "--port") == "8101"
    assert _flag(argv, "--max-model-len") == "256"
    assert _flag(argv, "--dtype") == "float32"
    assert _flag(argv, "--runner") == "pooling" and _flag(argv, "--convert") == "embed"
    assert "--enable-lora" not in argv
    assert spec.url == "http://127.0.0.1:8101"
    env = spec.environment({}, cpu_count=4)
    assert env["VLLM_API_KEY"] == "secret" and env["HF_HUB_OFFLINE"] == "1"
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "1"
    # Its own core: the last one (the chat engine's automatic binding reserves it).
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == "3"
    assert env["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"


def test_cpu_binding_choices(tmp_path: Path) -> None:
    def env(bind: str) -> dict[str, str]:
        settings = Settings(data_dir=tmp_path, embedding_engine={"cpu_threads_bind": bind})
        return embedding_spec_from_settings(settings, "k").environment({}, cpu_count=2)

    assert env("last")["VLLM_CPU_OMP_THREADS_BIND"] == "1"
    assert env("0-1")["VLLM_CPU_OMP_THREADS_BIND"] == "0-1"
    assert "VLLM_CPU_OMP_THREADS_BIND" not in env("auto")


def test_gpu_engine_gets_its_share_and_no_cpu_variables(tmp_path: Path) -> None:
    settings = Settings(
        embedding_engine={"device": "gpu", "model_dir": str(tmp_path),
                          "gpu_memory_utilization": 0.05, "extra_args": ["--seed", "1"]},
    )  # fmt: skip
    spec = embedding_spec_from_settings(settings, "k")
    argv = spec.argv()
    assert _flag(argv, "--gpu-memory-utilization") == "0.05"
    assert _flag(argv, "--dtype") == "auto"
    assert argv[-2:] == ["--seed", "1"]
    env = spec.environment({}, cpu_count=8)
    assert not any(name.startswith("VLLM_CPU_") for name in env)


def test_chat_spec_is_unchanged_by_default() -> None:
    spec = LaunchSpec(model_dir=Path("/m"), served_model_name="m", port=1, api_key="k")
    assert "--runner" not in spec.argv()
    assert "VLLM_CPU_OMP_THREADS_BIND" not in spec.environment({}, cpu_count=2)
