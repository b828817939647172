"""appliance/engine/launch.py: argv, environment and CPU binding of a vLLM engine."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.config import Settings
from appliance.engine.launch import (
    OFFLINE_ENV,
    LaunchSpec,
    cpu_thread_binding,
    spec_from_settings,
)

API_KEY = "sk-engine-7f3a9c-never-in-argv"
CPU_VARS = ("VLLM_CPU_KVCACHE_SPACE", "VLLM_CPU_OMP_THREADS_BIND", "VLLM_CPU_NUM_OF_RESERVED_CPU")


def _spec(**overrides: object) -> LaunchSpec:
    fields: dict[str, object] = {
        "model_dir": Path("/models/smollm2"),
        "served_model_name": "smollm2-135m-instruct",
        "port": 8123,
        "api_key": API_KEY,
        "python": "/opt/venv/bin/python",
    }
    fields.update(overrides)
    return LaunchSpec(**fields)  # type: ignore[arg-type]


def _flag(argv: list[str], name: str) -> str:
    assert argv.count(name) == 1, f"{name} appears {argv.count(name)} times in {argv}"
    return argv[argv.index(name) + 1]


def _cpus(binding: str) -> list[set[int]]:
    """ "0-3|4-7" -> [{0, 1, 2, 3}, {4, 5, 6, 7}]."""
    ranks = []
    for part in binding.split("|"):
        first, _, last = part.partition("-")
        ranks.append(set(range(int(first), int(last or first) + 1)))
    return ranks


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read APPLIANCE_* from the environment; keep the developer's out."""
    for name in list(os.environ):
        if name.startswith("APPLIANCE_"):
            monkeypatch.delenv(name)


# -- argv -----------------------------------------------------------------------------


def test_argv_runs_vllm_serve_through_the_launcher_with_the_given_python() -> None:
    argv = _spec().argv()
    assert argv[:5] == [
        "/opt/venv/bin/python", "-m", "appliance.engine.vllm_cli", "serve", "/models/smollm2"
    ]  # fmt: skip


def test_argv_carries_model_name_port_dtype_and_length() -> None:
    argv = _spec(dtype="float32", max_model_len=4096, host="0.0.0.0").argv()
    assert "--model" not in argv  # the serve CLI takes the model as its first argument
    assert _flag(argv, "--served-model-name") == "smollm2-135m-instruct"
    assert _flag(argv, "--host") == "0.0.0.0"
    assert _flag(argv, "--port") == "8123"
    assert _flag(argv, "--dtype") == "float32"
    assert _flag(argv, "--max-model-len") == "4096"
    assert _flag(argv, "--tensor-parallel-size") == "1"
    assert _flag(argv, "--pipeline-parallel-size") == "1"


@pytest.mark.parametrize("device", ["cpu", "gpu"])
def test_argv_never_contains_the_api_key(device: str) -> None:
    argv = _spec(device=device, data_parallel_size=2, extra_args=("--seed", "0")).argv()
    assert not any(API_KEY in arg for arg in argv)


def test_gpu_argv_sets_memory_utilization_and_cpu_argv_does_not() -> None:
    assert (
        _flag(_spec(device="gpu", gpu_memory_utilization=0.85).argv(), "--gpu-memory-utilization")
        == "0.85"
    )
    assert "--gpu-memory-utilization" not in _spec(device="cpu").argv()


def test_data_parallel_flag_only_when_more_than_one() -> None:
    assert "--data-parallel-size" not in _spec().argv()
    assert _flag(_spec(data_parallel_size=2).argv(), "--data-parallel-size") == "2"


def test_extra_args_come_last_in_order() -> None:
    argv = _spec(extra_args=("--enforce-eager", "--seed", "7")).argv()
    assert argv[-3:] == ["--enforce-eager", "--seed", "7"]


def test_url_is_built_from_host_and_port() -> None:
    assert _spec(host="127.0.0.1", port=9001).url == "http://127.0.0.1:9001"


# -- environment ----------------------------------------------------------------------


@pytest.mark.parametrize("device", ["cpu", "gpu"])
def test_environment_is_offline_and_carries_the_api_key(device: str) -> None:
    env = _spec(device=device).environment({}, cpu_count=2)
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "VLLM_NO_USAGE_STATS", "DO_NOT_TRACK"):
        assert env[name] == "1", name
    assert OFFLINE_ENV.items() <= env.items()
    assert env["VLLM_API_KEY"] == API_KEY


def test_one_node_keeps_vllm_host_ip_on_loopback_unless_given() -> None:
    # Unset, vLLM connect()s a UDP socket towards 8.8.8.8 to learn its own address.
    assert _spec().environment({}, cpu_count=2)["VLLM_HOST_IP"] == "127.0.0.1"
    given = _spec().environment({"VLLM_HOST_IP": "10.1.2.3"}, cpu_count=2)
    assert given["VLLM_HOST_IP"] == "10.1.2.3"


@pytest.mark.parametrize(
    "flags",
    [("--nnodes", "2", "--node-rank", "0"), ("--headless",), ("--data-parallel-address", "h")],
)
def test_a_node_of_several_is_not_pinned_to_loopback(flags: tuple[str, ...]) -> None:
    spec = _spec(device="gpu", extra_args=flags)
    assert spec.spans_nodes
    assert "VLLM_HOST_IP" not in spec.environment({}, cpu_count=2)


def test_environment_overrides_an_online_base_and_keeps_the_rest() -> None:
    base = {"PATH": "/usr/bin", "HF_HUB_OFFLINE": "0", "DO_NOT_TRACK": "0", "VLLM_API_KEY": "old"}
    env = _spec().environment(base, cpu_count=2)
    assert env["PATH"] == "/usr/bin"
    assert env["HF_HUB_OFFLINE"] == "1"
    assert env["DO_NOT_TRACK"] == "1"
    assert env["VLLM_API_KEY"] == API_KEY
    assert base == {"PATH": "/usr/bin", "HF_HUB_OFFLINE": "0", "DO_NOT_TRACK": "0",
                    "VLLM_API_KEY": "old"}  # fmt: skip


@pytest.mark.parametrize(("gib", "expected"), [(1.0, "1"), (4.0, "4"), (2.6, "3"), (0.25, "1")])
def test_cpu_environment_sizes_the_kv_cache_in_whole_gib(gib: float, expected: str) -> None:
    env = _spec(device="cpu", kv_cache_gib=gib).environment({}, cpu_count=2)
    assert env["VLLM_CPU_KVCACHE_SPACE"] == expected


def test_single_rank_cpu_engine_gets_no_thread_binding() -> None:
    env = _spec(device="cpu").environment({}, cpu_count=2)
    assert "VLLM_CPU_OMP_THREADS_BIND" not in env
    assert "VLLM_CPU_NUM_OF_RESERVED_CPU" not in env


def test_two_cpu_ranks_on_two_cores_bind_one_core_each() -> None:
    env = _spec(device="cpu", tensor_parallel_size=2).environment({}, cpu_count=2)
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == "0|1"
    assert env["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"


def test_cpu_ranks_count_tensor_times_pipeline_parallelism() -> None:
    spec = _spec(device="cpu", tensor_parallel_size=2, pipeline_parallel_size=2)
    assert spec.environment({}, cpu_count=8)["VLLM_CPU_OMP_THREADS_BIND"] == "0-1|2-3|4-5|6-7"


def test_cpu_engine_with_more_ranks_than_cores_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot bind 2 CPU ranks to 1 cores"):
        _spec(device="cpu", tensor_parallel_size=2).environment({}, cpu_count=1)


def test_gpu_environment_has_none_of_the_cpu_variables() -> None:
    env = _spec(device="gpu", tensor_parallel_size=2).environment({}, cpu_count=2)
    for name in CPU_VARS:
        assert name not in env, name


def test_extra_env_is_added() -> None:
    env = _spec(extra_env={"VLLM_LOGGING_LEVEL": "DEBUG"}).environment({}, cpu_count=2)
    assert env["VLLM_LOGGING_LEVEL"] == "DEBUG"


# -- cpu_thread_binding -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("ranks", "cpu_count", "expected"),
    [
        (1, 1, "0"),
        (1, 4, "0-3"),
        (2, 2, "0|1"),
        (2, 8, "0-3|4-7"),
        (3, 8, "0-1|2-3|4-5"),
        (4, 4, "0|1|2|3"),
    ],
)
def test_cpu_thread_binding_examples(ranks: int, cpu_count: int, expected: str) -> None:
    assert cpu_thread_binding(ranks, cpu_count) == expected


@pytest.mark.parametrize(("ranks", "cpu_count"), [(3, 2), (2, 1), (0, 4), (-1, 4)])
def test_cpu_thread_binding_refuses_impossible_layouts(ranks: int, cpu_count: int) -> None:
    with pytest.raises(ValueError, match="cannot bind"):
        cpu_thread_binding(ranks, cpu_count)


@given(st.integers(min_value=1, max_value=64).flatmap(
    lambda ranks: st.tuples(st.just(ranks), st.integers(min_value=ranks, max_value=512))
))  # fmt: skip
def test_cpu_thread_binding_gives_each_rank_its_own_equal_contiguous_cores(
    layout: tuple[int, int],
) -> None:
    ranks, cpu_count = layout
    binding = cpu_thread_binding(ranks, cpu_count)
    parts = _cpus(binding)
    assert len(parts) == ranks
    assert all(parts), binding
    every = [cpu for part in parts for cpu in part]
    assert len(every) == len(set(every)), f"overlapping ranks: {binding}"
    assert all(0 <= cpu < cpu_count for cpu in every), binding
    assert len({len(part) for part in parts}) == 1, f"unequal ranks: {binding}"
    assert all(max(part) - min(part) + 1 == len(part) for part in parts), binding


@given(ranks=st.integers(min_value=2, max_value=64), data=st.data())
def test_cpu_thread_binding_refuses_fewer_cores_than_ranks(ranks: int, data: st.DataObject) -> None:
    cpu_count = data.draw(st.integers(min_value=0, max_value=ranks - 1))
    with pytest.raises(ValueError):
        cpu_thread_binding(ranks, cpu_count)


# -- spec_from_settings -----------------------------------------------------------------


@pytest.mark.usefixtures("clean_env")
def test_spec_from_settings_defaults_to_float32_on_cpu(tmp_path: Path) -> None:
    spec = spec_from_settings(Settings(data_dir=tmp_path), api_key=API_KEY)
    assert spec.device == "cpu"
    assert spec.dtype == "float32"


@pytest.mark.usefixtures("clean_env")
def test_spec_from_settings_defaults_to_auto_on_gpu(tmp_path: Path) -> None:
    spec = spec_from_settings(Settings(data_dir=tmp_path, engine={"device": "gpu"}), API_KEY)
    assert spec.device == "gpu"
    assert spec.dtype == "auto"
    assert "--gpu-memory-utilization" in spec.argv()


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize("device", ["cpu", "gpu"])
def test_spec_from_settings_keeps_a_configured_dtype(tmp_path: Path, device: str) -> None:
    settings = Settings(data_dir=tmp_path, engine={"device": device, "dtype": "bfloat16"})
    assert spec_from_settings(settings, API_KEY).dtype == "bfloat16"


@pytest.mark.usefixtures("clean_env")
def test_spec_from_settings_copies_the_engine_section(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        engine={
            "served_model_name": "tiny",
            "host": "127.0.0.2",
            "port": 8555,
            "tensor_parallel_size": 2,
            "pipeline_parallel_size": 1,
            "data_parallel_size": 1,
            "max_model_len": 1024,
            "kv_cache_gib": 3.0,
            "gpu_memory_utilization": 0.5,
            "extra_args": ["--enforce-eager"],
        },
    )
    spec = spec_from_settings(settings, api_key=API_KEY)
    assert spec.served_model_name == "tiny"
    assert spec.url == "http://127.0.0.2:8555"
    assert spec.tensor_parallel_size == 2
    assert spec.max_model_len == 1024
    assert spec.kv_cache_gib == 3.0
    assert spec.gpu_memory_utilization == 0.5
    assert spec.extra_args == ("--enforce-eager",)
    assert spec.api_key == API_KEY
    assert spec.model_dir == (tmp_path / "models" / "tiny").resolve()


@pytest.mark.usefixtures("clean_env")
def test_spec_from_settings_makes_a_relative_model_dir_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    spec = spec_from_settings(Settings(data_dir=Path(".data")), api_key=API_KEY)
    assert spec.model_dir.is_absolute()
    assert spec.model_dir == tmp_path.resolve() / ".data" / "models" / "smollm2-135m-instruct"
    assert spec.argv()[4] == str(spec.model_dir)  # `serve MODEL_DIR`


@pytest.mark.usefixtures("clean_env")
def test_spec_from_settings_uses_a_configured_model_dir(tmp_path: Path) -> None:
    model = tmp_path / "elsewhere" / "model"
    spec = spec_from_settings(Settings(data_dir=tmp_path, engine={"model_dir": model}), API_KEY)
    assert spec.model_dir == model.resolve()


# -- mutual TLS on the engine's server ----------------------------------------------------


def test_engine_tls_from_settings_passes_vllms_ssl_flags(tmp_path: Path, clean_env: None) -> None:
    tls = {"cert_file": tmp_path / "e.crt", "key_file": tmp_path / "e.key",
           "ca_file": tmp_path / "ca.crt"}  # fmt: skip
    settings = Settings(data_dir=tmp_path, engine={"port": 8443, "tls": tls})
    spec = spec_from_settings(settings, api_key=API_KEY)
    argv = spec.argv()
    assert _flag(argv, "--ssl-keyfile") == str(tmp_path / "e.key")
    assert _flag(argv, "--ssl-certfile") == str(tmp_path / "e.crt")
    assert _flag(argv, "--ssl-ca-certs") == str(tmp_path / "ca.crt")
    assert _flag(argv, "--ssl-cert-reqs") == "2"  # ssl.CERT_REQUIRED
    assert spec.url == "https://127.0.0.1:8443"
    # The gateway's default upstream for the local engine speaks https too.
    assert settings.engine_url == "https://127.0.0.1:8443"
    assert settings.effective_upstreams()[0].url == "https://127.0.0.1:8443"


def test_without_engine_tls_no_ssl_flag_and_plain_http(tmp_path: Path, clean_env: None) -> None:
    spec = spec_from_settings(Settings(data_dir=tmp_path), api_key=API_KEY)
    assert not [arg for arg in spec.argv() if arg.startswith("--ssl")]
    assert spec.url.startswith("http://")


def test_engine_tls_needs_certificate_key_and_ca_together(tmp_path: Path, clean_env: None) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="cert_file, key_file and ca_file together"):
        Settings(data_dir=tmp_path, engine={"tls": {"cert_file": tmp_path / "e.crt",
                                                    "key_file": tmp_path / "e.key"}})  # fmt: skip
