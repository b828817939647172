"""``engine:``: the local vLLM engine that ``appliance up`` starts."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from appliance.settings.base import Section

__all__ = ["EmbeddingEngineSettings", "EngineServerTlsSettings", "EngineSettings"]


class EngineServerTlsSettings(Section):
    """Mutual TLS on the engine's own OpenAI server (vLLM ``--ssl-keyfile``,
    ``--ssl-certfile``, ``--ssl-ca-certs``, ``--ssl-cert-reqs 2``): clients without a
    certificate signed by ``ca_file`` are refused. All three files, or none."""

    cert_file: Path | None = Field(default=None, description="The engine's certificate")
    key_file: Path | None = Field(default=None, description="Its private key")
    ca_file: Path | None = Field(
        default=None, description="CA whose client certificates the engine accepts"
    )

    @model_validator(mode="after")
    def _all_or_none(self) -> EngineServerTlsSettings:
        given = [f is not None for f in (self.cert_file, self.key_file, self.ca_file)]
        if any(given) and not all(given):
            raise ValueError("engine.tls needs cert_file, key_file and ca_file together")
        return self

    @property
    def enabled(self) -> bool:
        return self.cert_file is not None


class EngineSettings(Section):
    """The local vLLM engine that ``appliance up`` starts (embedded default)."""

    enabled: bool = True
    device: Literal["cpu", "gpu"] = "cpu"
    model_dir: Path | None = Field(
        default=None, description="Model directory; default: the prepared dev model"
    )
    served_model_name: str = "smollm2-135m-instruct"
    host: str = "127.0.0.1"
    port: int = Field(default=8100, ge=1, le=65535)
    tensor_parallel_size: int = Field(default=1, ge=1)
    pipeline_parallel_size: int = Field(default=1, ge=1)
    data_parallel_size: int = Field(default=1, ge=1)
    max_model_len: int = Field(default=2048, ge=16)
    dtype: str | None = Field(
        default=None,
        description="vLLM --dtype; default: float32 on CPU (bfloat16 on AVX2 CPUs changes "
        "the dev model's greedy answers), auto on GPU",
    )
    kv_cache_gib: float = Field(default=1.0, gt=0, description="KV cache size (CPU engines)")
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    api_key: SecretStr | None = Field(
        default=None, description="Shared secret; default: generated once in the data directory"
    )
    startup_timeout_s: float = Field(default=1200.0, gt=0)
    max_restarts: int = Field(default=5, ge=0)
    extra_args: list[str] = Field(default_factory=list)
    tls: EngineServerTlsSettings = Field(
        default_factory=EngineServerTlsSettings,
        description="Serve the engine over mutual TLS (engines on other hosts)",
    )


class EmbeddingEngineSettings(Section):
    """A second local vLLM engine that ``appliance up`` starts beside the chat engine:
    an embedding model served by vLLM's pooling runner (``/v1/embeddings``). The
    default needs no download: the dev model, pooled as an embedding model."""

    enabled: bool | None = Field(
        default=None,
        description="Start it with `appliance up`; default: whenever the local chat engine "
        "starts (engine.enabled)",
    )
    device: Literal["cpu", "gpu"] = "cpu"
    model_dir: Path | None = Field(
        default=None,
        description="Model directory; default: the prepared dev model (the chat engine's "
        "weights, pooled as an embedding model)",
    )
    served_model_name: str = "smollm2-135m-embed"
    host: str = "127.0.0.1"
    port: int = Field(default=8101, ge=1, le=65535)
    convert: Literal["embed", "none"] = Field(
        default="embed",
        description="embed: serve a generative (causal LM) checkpoint as an embedding model "
        "(vLLM --convert embed); none: the checkpoint is an embedding model already",
    )
    pooling: Literal["LAST", "MEAN", "CLS"] | None = Field(
        default="LAST",
        description="How token states become one vector (vLLM --pooler-config pooling_type); "
        "LAST is vLLM's default for a converted causal LM; null: the model's own default",
    )
    normalize: bool = Field(
        default=True, description="L2-normalise the vectors (vLLM pooler use_activation)"
    )
    max_model_len: int = Field(default=512, ge=16, description="Longest input, in tokens")
    dtype: str | None = Field(
        default=None, description="vLLM --dtype; default: float32 on CPU, auto on GPU"
    )
    kv_cache_gib: float = Field(
        default=1.0, gt=0, description="KV cache size (CPU engines; a causal LM pools through it)"
    )
    gpu_memory_utilization: float = Field(
        default=0.1,
        gt=0,
        le=1,
        description="Its share of the GPU memory (appliance plan --embedding-model computes "
        "it); lower the chat engine's by as much when both share GPUs",
    )
    cpu_threads_bind: str = Field(
        default="last",
        pattern=r"^(last|auto|[0-9][0-9,-]*)$",
        description="CPU cores it computes on (VLLM_CPU_OMP_THREADS_BIND, e.g. 1 or 2-3); "
        "last: the host's last core (the chat engine's automatic binding leaves it to its "
        "API server), so the two engines do not share a core; auto: vLLM's own binding",
    )
    startup_timeout_s: float = Field(default=1200.0, gt=0)
    max_restarts: int = Field(default=5, ge=0)
    extra_args: list[str] = Field(default_factory=list)
