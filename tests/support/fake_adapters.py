"""Tiny fake PEFT LoRA adapters with the dev model's shapes and zero weights, and a
fake base model in a store, written without torch: safetensors is an 8-byte
little-endian header length, a JSON header and the raw bytes."""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path

from appliance.modelstore.manifest import write_manifest

__all__ = [
    "DEV_BASE",
    "DEV_CONFIG",
    "DEV_DIMS",
    "lora_shapes",
    "write_adapter",
    "write_base",
    "write_safetensors",
]

# SmolLM2-135M-Instruct's config.json (the dev model), the fields the checks read.
DEV_BASE = "smollm2-135m-instruct"
DEV_CONFIG = {
    "_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "num_hidden_layers": 30,
    "vocab_size": 49152,
}
# (in, out) of the dev model's attention projections: head_dim 64, 3 KV heads.
DEV_DIMS = {"q_proj": (576, 576), "k_proj": (576, 192), "v_proj": (576, 192),
            "o_proj": (576, 576)}  # fmt: skip


def write_safetensors(path: Path, shapes: Mapping[str, Sequence[int]], dtype: str = "F32") -> None:
    size = {"F32": 4, "F16": 2, "BF16": 2}[dtype]
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in shapes.items():
        length = math.prod(shape) * size
        header[name] = {
            "dtype": dtype,
            "shape": list(shape),
            "data_offsets": [offset, offset + length],
        }
        offset += length
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(offset))


def lora_shapes(
    rank: int, modules: Sequence[str] = ("q_proj", "v_proj"), layers: Sequence[int] = (0, 1)
) -> dict[str, tuple[int, int]]:
    shapes: dict[str, tuple[int, int]] = {}
    for layer in layers:
        for module in modules:
            in_dim, out_dim = DEV_DIMS[module]
            prefix = f"base_model.model.model.layers.{layer}.self_attn.{module}"
            shapes[f"{prefix}.lora_A.weight"] = (rank, in_dim)
            shapes[f"{prefix}.lora_B.weight"] = (out_dim, rank)
    return shapes


def write_adapter(
    directory: Path,
    *,
    rank: int = 8,
    base_name: str = "HuggingFaceTB/SmolLM2-135M-Instruct",
    shapes: Mapping[str, Sequence[int]] | None = None,
    modules: Sequence[str] = ("q_proj", "v_proj"),
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "peft_type": "LORA", "r": rank, "lora_alpha": 16, "lora_dropout": 0.0,
        "target_modules": list(modules), "base_model_name_or_path": base_name,
        "task_type": "CAUSAL_LM", "bias": "none",
    }  # fmt: skip
    (directory / "adapter_config.json").write_text(json.dumps(config))
    write_safetensors(
        directory / "adapter_model.safetensors",
        shapes if shapes is not None else lora_shapes(rank, modules),
    )
    return directory


def write_base(store: Path, name: str = DEV_BASE) -> Path:
    directory = store / name
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps(DEV_CONFIG))
    (directory / "model.safetensors").write_bytes(b"w" * 64)
    write_manifest(directory)
    return directory
