"""Model profiles: one YAML file per model under ``appliance/models/`` (package data,
so an installed wheel carries them), validated by a schema.

A profile holds what the memory math needs (layers, heads, MLA ranks, experts,
parameters, weight bytes), how vLLM serves the model (served name, parsers, the chat
template) and the expected weight manifest where it is known. The schema is a pydantic
model (the YAML boundary); the planner works on the frozen :class:`ModelProfile` it
produces.

Chat templates are package data too (``appliance/models/chat_templates/*.jinja``); a
profile names one by file name. Every deploy path puts the templates into
:data:`ENGINE_CHAT_TEMPLATE_DIR` on the engine hosts (the chart mounts a ConfigMap there,
the Ansible engine role copies them there), which is the directory the planner's
``--chat-template`` names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from appliance.errors import ConfigurationError

__all__ = [
    "CHAT_TEMPLATES_SUBDIR",
    "DTYPE_BYTES",
    "ENGINE_CHAT_TEMPLATE_DIR",
    "Attention",
    "ModelProfile",
    "Moe",
    "ProfileSchema",
    "WeightFile",
    "default_profiles_dir",
    "find_profile",
    "load_profile",
    "load_profiles",
    "profile_from_data",
    "profile_schema",
    "read_chat_template",
]

# nvfp4: NVIDIA's 4-bit format (E2M1 values, one FP8 scale per 16 values: 0.5625 B per
# parameter), meant for Blackwell (hardware.unsupported_weights says why not elsewhere).
# It has no whole byte size, so an nvfp4 profile states weights.bytes.
WeightDtype = Literal["fp8", "bf16", "fp16", "fp32", "nvfp4"]
DTYPE_BYTES: dict[str, int] = {"fp8": 1, "bf16": 2, "fp16": 2, "fp32": 4}

# Where every deploy path places the chat templates on the engine hosts, and so the
# directory the planner's --chat-template names: the chart mounts its ConfigMap here, the
# Ansible engine role copies the templates here (appliance_engine_chat_template_dir).
ENGINE_CHAT_TEMPLATE_DIR = "/etc/appliance/chat-templates"
CHAT_TEMPLATES_SUBDIR = "chat_templates"  # next to the profiles: appliance/models/chat_templates
_CHAT_TEMPLATE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]*\.jinja$"


# -- the schema (YAML boundary) --------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AttentionSchema(_Strict):
    kind: Literal["mla", "gqa"]
    num_layers: int = Field(ge=1)
    num_attention_heads: int = Field(ge=1)
    num_kv_heads: int = Field(ge=1)
    head_dim: int = Field(ge=1, description="per-head dim of K/V (GQA); q/k head dim for MLA")
    kv_lora_rank: int = Field(default=0, ge=0, description="MLA latent width (c_kv)")
    qk_rope_head_dim: int = Field(default=0, ge=0, description="MLA decoupled RoPE key width")

    @model_validator(mode="after")
    def _mla_ranks(self) -> AttentionSchema:
        if self.kind == "mla" and (self.kv_lora_rank == 0 or self.qk_rope_head_dim == 0):
            raise ValueError("mla attention needs kv_lora_rank and qk_rope_head_dim")
        if self.num_attention_heads % self.num_kv_heads:
            raise ValueError("num_attention_heads must be a multiple of num_kv_heads")
        return self


class MoeSchema(_Strict):
    routed_experts: int = Field(ge=1)
    shared_experts: int = Field(default=0, ge=0)
    experts_per_token: int = Field(ge=1)
    moe_layers: int = Field(ge=1)
    moe_intermediate_size: int = Field(ge=1)


class WeightsSchema(_Strict):
    dtype: WeightDtype
    bytes: int | None = Field(
        default=None, ge=1, description="in-memory bytes of the main model; default params x dtype"
    )
    expert_bytes: int = Field(default=0, ge=0, description="bytes of the routed experts (MoE)")
    checkpoint_bytes: int | None = Field(default=None, ge=1, description="bytes on disk")
    shards: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _sized(self) -> WeightsSchema:
        if self.dtype not in DTYPE_BYTES and self.bytes is None:
            raise ValueError(f"{self.dtype} weights have no whole byte size: state weights.bytes")
        return self


class VllmSchema(_Strict):
    trust_remote_code: bool = False
    reasoning_parser: str | None = None
    tool_call_parser: str | None = None
    chat_template: str | None = Field(
        default=None,
        pattern=_CHAT_TEMPLATE_NAME,
        description="file name of a template in chat_templates/ next to the profiles; the "
        f"engine gets --chat-template {ENGINE_CHAT_TEMPLATE_DIR}/<name>",
    )
    dtype: str | None = Field(default=None, description="--dtype override (CPU test models)")


class WeightFileSchema(_Strict):
    name: str = Field(min_length=1)
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class ProfileSchema(_Strict):
    """The YAML format of ``appliance/models/<name>.yaml``."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]*$")
    display_name: str
    source: str = Field(description="where the weights come from (Hugging Face repo id)")
    architecture: str
    license: str
    served_model_name: str
    context_length: int = Field(ge=16)
    hidden_size: int = Field(ge=1)
    vocab_size: int = Field(ge=1)
    parameters: int = Field(ge=1)
    active_parameters: int | None = Field(default=None, ge=1)
    attention: AttentionSchema
    moe: MoeSchema | None = None
    weights: WeightsSchema
    runtime_overhead_gib: float = Field(
        gt=0, description="per-GPU memory that is neither weights nor KV cache (calibrated)"
    )
    vllm: VllmSchema = Field(default_factory=VllmSchema)
    manifest: list[WeightFileSchema] = Field(default_factory=list)
    test_only: bool = Field(default=False, description="a test or dev model, not for production")
    notes: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> ProfileSchema:
        if self.moe is None and self.weights.expert_bytes:
            raise ValueError("weights.expert_bytes needs a moe section")
        if self.moe is not None and self.moe.moe_layers > self.attention.num_layers:
            raise ValueError("moe.moe_layers exceeds attention.num_layers")
        total = self.weights.bytes or self.parameters * DTYPE_BYTES[self.weights.dtype]
        if self.weights.expert_bytes >= total:
            raise ValueError("weights.expert_bytes must be less than the model's bytes")
        names = [entry.name for entry in self.manifest]
        if len(names) != len(set(names)):
            raise ValueError("manifest names a file twice")
        return self


# -- the value the planner uses --------------------------------------------------------
@dataclass(frozen=True)
class Attention:
    kind: Literal["mla", "gqa"]
    num_layers: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    kv_lora_rank: int = 0
    qk_rope_head_dim: int = 0


@dataclass(frozen=True)
class Moe:
    routed_experts: int
    shared_experts: int
    experts_per_token: int
    moe_layers: int
    moe_intermediate_size: int


@dataclass(frozen=True)
class WeightFile:
    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class ModelProfile:
    name: str
    display_name: str
    source: str
    architecture: str
    license: str
    served_model_name: str
    context_length: int
    hidden_size: int
    vocab_size: int
    parameters: int
    attention: Attention
    weight_dtype: WeightDtype
    weight_bytes: int
    expert_weight_bytes: int
    runtime_overhead_gib: float
    moe: Moe | None = None
    active_parameters: int | None = None
    checkpoint_bytes: int | None = None
    shards: int | None = None
    trust_remote_code: bool = False
    reasoning_parser: str | None = None
    tool_call_parser: str | None = None
    chat_template: str | None = None
    vllm_dtype: str | None = None
    manifest: tuple[WeightFile, ...] = ()
    test_only: bool = False
    notes: str = ""

    @property
    def is_moe(self) -> bool:
        return self.moe is not None

    @property
    def dense_weight_bytes(self) -> int:
        """Bytes that are not routed experts: attention, dense MLPs, shared experts,
        embedding and head (replicated on every rank of a DP+EP layout)."""
        return self.weight_bytes - self.expert_weight_bytes


def profile_from_data(data: Any, *, source: str = "<data>") -> ModelProfile:
    """Validate parsed YAML against the schema; ConfigurationError names the key."""
    try:
        schema = ProfileSchema.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in item['loc']) or '(root)'}: {item['msg']}"
            for item in exc.errors()
        ]
        raise ConfigurationError(f"invalid model profile {source}: " + "; ".join(problems)) from exc
    weights = schema.weights
    return ModelProfile(
        name=schema.name,
        display_name=schema.display_name,
        source=schema.source,
        architecture=schema.architecture,
        license=schema.license,
        served_model_name=schema.served_model_name,
        context_length=schema.context_length,
        hidden_size=schema.hidden_size,
        vocab_size=schema.vocab_size,
        parameters=schema.parameters,
        active_parameters=schema.active_parameters,
        attention=Attention(**schema.attention.model_dump()),
        moe=Moe(**schema.moe.model_dump()) if schema.moe else None,
        weight_dtype=weights.dtype,
        weight_bytes=weights.bytes or schema.parameters * DTYPE_BYTES[weights.dtype],
        expert_weight_bytes=weights.expert_bytes,
        checkpoint_bytes=weights.checkpoint_bytes,
        shards=weights.shards,
        runtime_overhead_gib=schema.runtime_overhead_gib,
        trust_remote_code=schema.vllm.trust_remote_code,
        reasoning_parser=schema.vllm.reasoning_parser,
        tool_call_parser=schema.vllm.tool_call_parser,
        chat_template=schema.vllm.chat_template,
        vllm_dtype=schema.vllm.dtype,
        manifest=tuple(WeightFile(**entry.model_dump()) for entry in schema.manifest),
        test_only=schema.test_only,
        notes=schema.notes,
    )


def profile_schema() -> dict[str, Any]:
    """The JSON schema of a profile file (for editors and ``models check --schema``)."""
    return ProfileSchema.model_json_schema()


def default_profiles_dir() -> Path:
    """The profiles shipped inside the package (``appliance/models/``): the same in a
    source checkout, an installed wheel and a container image."""
    return Path(__file__).resolve().parent.parent / "models"


def load_profile(path: Path) -> ModelProfile:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"invalid model profile {path}: not YAML: {exc}") from exc
    except OSError as exc:
        raise ConfigurationError(f"cannot read model profile {path}: {exc.strerror}") from exc
    profile = profile_from_data(data, source=str(path))
    if profile.name != path.stem:
        raise ConfigurationError(
            f"invalid model profile {path}: name {profile.name!r} must match the file name"
        )
    if profile.chat_template is not None:
        template = path.parent / CHAT_TEMPLATES_SUBDIR / profile.chat_template
        if not template.is_file():
            raise ConfigurationError(
                f"invalid model profile {path}: vllm.chat_template {profile.chat_template!r} "
                f"is not in {template.parent}"
            )
    return profile


def load_profiles(directory: Path | None = None) -> dict[str, ModelProfile]:
    """Every ``*.yaml`` profile in ``directory``, by name."""
    folder = directory or default_profiles_dir()
    if not folder.is_dir():
        raise ConfigurationError(f"model profile directory not found: {folder}")
    return {path.stem: load_profile(path) for path in sorted(folder.glob("*.yaml"))}


def find_profile(name: str, directory: Path | None = None) -> ModelProfile:
    """One profile by name (or served name); ConfigurationError lists the known ones."""
    profiles = load_profiles(directory)
    wanted = name.strip().lower()
    for profile in profiles.values():
        if wanted in (profile.name, profile.served_model_name.lower()):
            return profile
    raise ConfigurationError(f"unknown model {name!r}; known: {', '.join(sorted(profiles))}")


def read_chat_template(name: str, directory: Path | None = None) -> str:
    """The text of a chat template a profile names (``chat_templates/<name>`` next to the
    profiles), for the deploy paths that carry it to the engine hosts."""
    if re.fullmatch(_CHAT_TEMPLATE_NAME, name) is None:
        raise ConfigurationError(f"not a chat template file name: {name!r}")
    path = (directory or default_profiles_dir()) / CHAT_TEMPLATES_SUBDIR / name
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read chat template {path}: {exc.strerror}") from exc
