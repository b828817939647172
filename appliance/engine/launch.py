"""From a typed launch spec to the argv and environment of vLLM's serve CLI.

Pure: the planner produces a :class:`LaunchSpec`, the supervisor runs it.
"""

from __future__ import annotations

import json
import ssl
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from appliance.config import Settings

__all__ = [
    "OFFLINE_ENV",
    "VLLM_CLI_MODULE",
    "VLLM_LORA_RANKS",
    "EngineTls",
    "LaunchSpec",
    "LoraModule",
    "LoraServing",
    "Pooling",
    "cpu_thread_binding",
    "embedding_spec_from_settings",
    "engine_tls_from_settings",
    "lora_rank_limit",
    "spec_from_settings",
]

# Run as `python -m VLLM_CLI_MODULE serve MODEL ...` (appliance/engine/vllm_cli.py).
VLLM_CLI_MODULE = "appliance.engine.vllm_cli"

# Flags a planner gives each node of a multi-node engine.
_MULTI_NODE_FLAGS = ("--nnodes", "--headless", "--data-parallel-address")

# Every engine runs with these: no hub downloads, no usage reports, nothing leaves.
OFFLINE_ENV: Mapping[str, str] = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}


def cpu_thread_binding(ranks: int, cpu_count: int) -> str:
    """``VLLM_CPU_OMP_THREADS_BIND`` for ``ranks`` workers on one node: contiguous,
    equal CPU ranges separated by ``|`` ("0|1" for two ranks on two cores).

    vLLM's default ("auto") wants one NUMA node per rank, which small hosts lack.
    """
    if ranks < 1 or cpu_count < ranks:
        raise ValueError(f"cannot bind {ranks} CPU ranks to {cpu_count} cores")
    per_rank = cpu_count // ranks
    parts = []
    for rank in range(ranks):
        first = rank * per_rank
        last = first + per_rank - 1
        parts.append(str(first) if first == last else f"{first}-{last}")
    return "|".join(parts)


@dataclass(frozen=True)
class EngineTls:
    """The server side of mutual TLS on vLLM's OpenAI server: its certificate and key,
    and the CA whose client certificates it requires (no certificate, no connection)."""

    cert_file: Path
    key_file: Path
    ca_file: Path

    def args(self) -> list[str]:
        return [
            "--ssl-keyfile", str(self.key_file),
            "--ssl-certfile", str(self.cert_file),
            "--ssl-ca-certs", str(self.ca_file),
            "--ssl-cert-reqs", str(int(ssl.CERT_REQUIRED)),
        ]  # fmt: skip


# The values vLLM accepts for --max-lora-rank (vllm/config/lora.py, MaxLoRARanks).
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def lora_rank_limit(rank: int) -> int:
    """The smallest ``--max-lora-rank`` vLLM accepts that holds ``rank``."""
    for allowed in VLLM_LORA_RANKS:
        if allowed >= rank:
            return allowed
    raise ValueError(f"LoRA rank {rank} is above vLLM's largest ({VLLM_LORA_RANKS[-1]})")


@dataclass(frozen=True)
class LoraModule:
    """One adapter the engine loads at start: the name callers use
    (``<model>:<adapter>``), its directory in the model store (a local path: vLLM never
    asks a hub for it) and its rank."""

    name: str
    path: Path
    rank: int


@dataclass(frozen=True)
class LoraServing:
    """vLLM's multi-LoRA flags for the adapters of the served model."""

    modules: tuple[LoraModule, ...]
    base_model_name: str
    max_loras: int | None = None
    max_rank: int | None = None  # None: the largest adapter's, as vLLM accepts it

    @classmethod
    def of(
        cls, modules: Sequence[LoraModule], base_model_name: str, max_loras: int | None = None
    ) -> LoraServing | None:
        """None when there are no adapters: the engine starts without LoRA."""
        return cls(tuple(modules), base_model_name, max_loras) if modules else None

    def args(self) -> list[str]:
        loras = self.max_loras or min(len(self.modules), 4)  # adapters in one batch
        rank = self.max_rank or lora_rank_limit(max(module.rank for module in self.modules))
        # JSON form of --lora-modules: names hold ':' and paths may hold ',' or '='.
        specs = [
            json.dumps(
                {"name": m.name, "path": str(m.path), "base_model_name": self.base_model_name},
                separators=(",", ":"),
            )
            for m in self.modules
        ]
        return [
            "--enable-lora",
            "--max-loras", str(loras),
            "--max-lora-rank", str(rank),
            "--lora-modules", *specs,
        ]  # fmt: skip


@dataclass(frozen=True)
class Pooling:
    """vLLM's pooling runner: an embedding model, or a generative checkpoint converted
    into one (``--convert embed``), with the pooling and normalisation stated rather than
    left to vLLM's defaults, so a reference computation can follow them exactly."""

    convert: Literal["embed", "none"] = "embed"
    pooling_type: Literal["LAST", "MEAN", "CLS"] | None = "LAST"
    normalize: bool = True

    def args(self) -> list[str]:
        argv = ["--runner", "pooling"]
        if self.convert != "none":
            argv += ["--convert", self.convert]
        config: dict[str, object] = {"use_activation": self.normalize}
        if self.pooling_type is not None:
            config["pooling_type"] = self.pooling_type
        return [*argv, "--pooler-config", json.dumps(config, separators=(",", ":"))]


@dataclass(frozen=True)
class LaunchSpec:
    model_dir: Path
    served_model_name: str
    port: int
    api_key: str
    host: str = "127.0.0.1"
    device: Literal["cpu", "gpu"] = "cpu"
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    data_parallel_size: int = 1
    max_model_len: int = 2048
    dtype: str = "auto"
    kv_cache_gib: float = 1.0
    gpu_memory_utilization: float = 0.9
    python: str = field(default=sys.executable)
    extra_args: tuple[str, ...] = ()
    extra_env: Mapping[str, str] = field(default_factory=dict)
    tls: EngineTls | None = None
    lora: LoraServing | None = None
    pooling: Pooling | None = None  # None: the generate runner (chat, completions)
    # VLLM_CPU_OMP_THREADS_BIND: cores ("1", "2-3"), "last" (this host's last core) or
    # None (vLLM's automatic binding, or cpu_thread_binding's for several ranks).
    cpu_threads_bind: str | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls is not None else 'http'}://{self.host}:{self.port}"

    def argv(self) -> list[str]:
        # vLLM's serve CLI, the one entry point for heads and headless workers on every
        # build, through the appliance's launcher (vllm_cli: the `vllm` script and
        # vLLM's own module die under vllm-cpu, whose metadata name is vllm-cpu).
        argv = [
            self.python, "-m", VLLM_CLI_MODULE, "serve", str(self.model_dir),
            "--served-model-name", self.served_model_name,
            "--host", self.host,
            "--port", str(self.port),
            "--max-model-len", str(self.max_model_len),
            "--dtype", self.dtype,
            "--tensor-parallel-size", str(self.tensor_parallel_size),
            "--pipeline-parallel-size", str(self.pipeline_parallel_size),
        ]  # fmt: skip
        if self.data_parallel_size > 1:
            argv += ["--data-parallel-size", str(self.data_parallel_size)]
        if self.device == "gpu":
            argv += ["--gpu-memory-utilization", str(self.gpu_memory_utilization)]
        if self.tls is not None:
            argv += self.tls.args()
        if self.lora is not None:
            argv += self.lora.args()
        if self.pooling is not None:
            argv += self.pooling.args()
        argv += list(self.extra_args)
        return argv

    def environment(self, base: Mapping[str, str], *, cpu_count: int) -> dict[str, str]:
        env = dict(base)
        env.update(OFFLINE_ENV)
        # The shared secret goes by environment, not argv, so `ps` does not show it.
        env["VLLM_API_KEY"] = self.api_key
        if self.lora is not None:
            # The admin page loads and unloads adapters at runtime (/v1/load_lora_adapter,
            # behind VLLM_API_KEY); only store paths, verified by the gateway first.
            env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
        if self.device == "cpu":
            env["VLLM_CPU_KVCACHE_SPACE"] = str(max(1, round(self.kv_cache_gib)))
            ranks = self.tensor_parallel_size * self.pipeline_parallel_size
            if ranks > 1:
                env["VLLM_CPU_OMP_THREADS_BIND"] = cpu_thread_binding(ranks, cpu_count)
                env["VLLM_CPU_NUM_OF_RESERVED_CPU"] = "0"
            if self.cpu_threads_bind is not None:
                env["VLLM_CPU_OMP_THREADS_BIND"] = (
                    str(cpu_count - 1) if self.cpu_threads_bind == "last" else self.cpu_threads_bind
                )
                env["VLLM_CPU_NUM_OF_RESERVED_CPU"] = "0"
        if not self.spans_nodes:
            # All ranks on this host talk over loopback. Unset, vLLM finds its address
            # by routing a UDP socket towards 8.8.8.8: no packet, but a connect() to an
            # outside address that an egress audit flags (tests/e2e/test_engine_offline).
            env.setdefault("VLLM_HOST_IP", "127.0.0.1")
        env.update(self.extra_env)
        return env

    @property
    def spans_nodes(self) -> bool:
        """Whether this engine is one node of several (its flags name the others)."""
        return any(flag in self.extra_args for flag in _MULTI_NODE_FLAGS)


def engine_tls_from_settings(settings: Settings) -> EngineTls | None:
    """``engine.tls`` as the engine's server side of mutual TLS; None when not set."""
    tls = settings.engine.tls
    if tls.cert_file is None or tls.key_file is None or tls.ca_file is None:
        return None
    return EngineTls(
        cert_file=tls.cert_file.resolve(),
        key_file=tls.key_file.resolve(),
        ca_file=tls.ca_file.resolve(),
    )


def spec_from_settings(
    settings: Settings, api_key: str, *, lora: LoraServing | None = None
) -> LaunchSpec:
    """``lora``: the model's adapters (appliance.adapters.lora_serving), if any."""
    engine = settings.engine
    return LaunchSpec(
        model_dir=settings.engine_model_dir.resolve(),
        served_model_name=engine.served_model_name,
        host=engine.host,
        port=engine.port,
        api_key=api_key,
        device=engine.device,
        tensor_parallel_size=engine.tensor_parallel_size,
        pipeline_parallel_size=engine.pipeline_parallel_size,
        data_parallel_size=engine.data_parallel_size,
        max_model_len=engine.max_model_len,
        dtype=settings.engine_dtype,
        kv_cache_gib=engine.kv_cache_gib,
        gpu_memory_utilization=engine.gpu_memory_utilization,
        extra_args=tuple(engine.extra_args),
        tls=engine_tls_from_settings(settings),
        lora=lora,
    )


def embedding_spec_from_settings(settings: Settings, api_key: str) -> LaunchSpec:
    """The local embedding engine (``embedding_engine``): vLLM's pooling runner on its
    own port, with the same shared secret and server TLS as the chat engine."""
    engine = settings.embedding_engine
    return LaunchSpec(
        model_dir=settings.embedding_model_dir.resolve(),
        served_model_name=engine.served_model_name,
        host=engine.host,
        port=engine.port,
        api_key=api_key,
        device=engine.device,
        max_model_len=engine.max_model_len,
        dtype=settings.embedding_engine_dtype,
        kv_cache_gib=engine.kv_cache_gib,
        gpu_memory_utilization=engine.gpu_memory_utilization,
        extra_args=tuple(engine.extra_args),
        tls=engine_tls_from_settings(settings),
        pooling=Pooling(
            convert=engine.convert, pooling_type=engine.pooling, normalize=engine.normalize
        ),
        cpu_threads_bind=None if engine.cpu_threads_bind == "auto" else engine.cpu_threads_bind,
    )
