"""Does a PEFT LoRA adapter fit its base model? Pure checks on parsed JSON.

Inputs are the adapter's ``adapter_config.json``, the JSON header of its
``adapter_model.safetensors`` and the base model's ``config.json``; nothing here
reads a file or imports torch. Steps:

1. ``adapter_config.json``: a LoRA (``peft_type``), a declared rank ``r`` within the
   appliance's maximum, no DoRA and no per-module ranks (vLLM serves neither), and a
   ``base_model_name_or_path`` naming the base model.
2. The safetensors header: every tensor a ``lora_A``/``lora_B`` weight of a module the
   base model has, data offsets that tile the file exactly.
3. Shapes: ``lora_A`` is ``(r, in)`` and ``lora_B`` is ``(out, r)``, with ``in`` and
   ``out`` the module's sizes from the base model's ``config.json``; layer indices
   below ``num_hidden_layers``; every ``lora_A`` has its ``lora_B``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from appliance.errors import ManifestError

__all__ = [
    "DEFAULT_MAX_ADAPTER_RANK",
    "AdapterShape",
    "check_adapter",
    "check_base_name",
    "module_dims",
    "normalise_model_name",
]

DEFAULT_MAX_ADAPTER_RANK = 64

_DTYPE_BYTES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1,
    "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
}  # fmt: skip
_KEY = re.compile(
    r"^(?:base_model\.model\.)?(?P<module>(?:.*\.)?(?P<leaf>\w+))"
    r"\.lora_(?P<ab>[AB])(?:\.\w+)?\.weight$"
)
_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")


@dataclass(frozen=True)
class AdapterShape:
    """What the checks established about an adapter."""

    rank: int
    target_modules: tuple[str, ...]
    layers: tuple[int, ...]
    tensors: int
    lora_alpha: float | None
    base_model_name_or_path: str


def normalise_model_name(name: str) -> str:
    """``/data/HuggingFaceTB/SmolLM2-135M-Instruct/`` -> ``smollm2-135m-instruct``."""
    return name.strip().rstrip("/").rsplit("/", 1)[-1].lower()


def check_base_name(declared: str, accepted: Iterable[str]) -> None:
    """The adapter's ``base_model_name_or_path`` must name the base model (its last path
    component, case-insensitive, against the store name, profile source and the base's
    own ``_name_or_path``)."""
    names = {normalise_model_name(name) for name in accepted if name and name.strip()}
    if not declared.strip():
        raise ManifestError("adapter_config.json does not name its base_model_name_or_path")
    if normalise_model_name(declared) not in names:
        raise ManifestError(
            f"the adapter was trained on {declared!r}, not on this base model "
            f"(accepted: {', '.join(sorted(names))}); import it with its own base"
        )


def _int(config: Mapping[str, Any], key: str, default: int | None = None) -> int:
    value = config.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ManifestError(f"the base model's config.json lacks a positive {key}")
    return value


def _attention_dims(config: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
    hidden = _int(config, "hidden_size")
    heads = _int(config, "num_attention_heads")
    if config.get("kv_lora_rank"):  # MLA (DeepSeek-V2/V3)
        nope, rope = _int(config, "qk_nope_head_dim"), _int(config, "qk_rope_head_dim")
        v_dim, kv_rank = _int(config, "v_head_dim"), _int(config, "kv_lora_rank")
        q_dims = {"q_proj": (hidden, heads * (nope + rope))}
        if config.get("q_lora_rank"):
            q_rank = _int(config, "q_lora_rank")
            q_dims = {"q_a_proj": (hidden, q_rank), "q_b_proj": (q_rank, heads * (nope + rope))}
        return {
            **q_dims,
            "kv_a_proj_with_mqa": (hidden, kv_rank + rope),
            "kv_b_proj": (kv_rank, heads * (nope + v_dim)),
            "o_proj": (heads * v_dim, hidden),
        }
    kv_heads = _int(config, "num_key_value_heads", heads)
    head_dim = _int(config, "head_dim", hidden // heads)
    return {
        "q_proj": (hidden, heads * head_dim),
        "k_proj": (hidden, kv_heads * head_dim),
        "v_proj": (hidden, kv_heads * head_dim),
        "o_proj": (heads * head_dim, hidden),
    }


def _mlp_intermediate(config: Mapping[str, Any], module: str) -> int:
    if ".shared_experts." in f".{module}":
        return _int(config, "moe_intermediate_size") * _int(config, "n_shared_experts", 1)
    if ".experts." in f".{module}":
        return _int(config, "moe_intermediate_size")
    return _int(config, "intermediate_size")


def _dims(config: Mapping[str, Any], module: str, leaf: str) -> tuple[int, int] | None:
    """``(in, out)`` of one linear layer of the base model; None for a module the
    checks do not know (refused: its shape cannot be checked)."""
    attention = _attention_dims(config)
    if leaf in attention:
        return attention[leaf]
    hidden = _int(config, "hidden_size")
    if leaf in ("gate_proj", "up_proj"):
        return hidden, _mlp_intermediate(config, module)
    if leaf == "down_proj":
        return _mlp_intermediate(config, module), hidden
    if leaf == "lm_head":
        return hidden, _int(config, "vocab_size")
    return None


def module_dims(config: Mapping[str, Any], target_modules: Iterable[str]) -> list[tuple[int, int]]:
    """``(in, out)`` per layer of each target module (dense MLP sizes), for memory
    estimates; unknown modules are left out."""
    found = (_dims(config, f"model.layers.0.{leaf}", leaf) for leaf in target_modules)
    return [dims for dims in found if dims is not None]


def _rank(adapter_config: Mapping[str, Any], max_rank: int) -> int:
    peft_type = str(adapter_config.get("peft_type", "LORA")).upper()
    if peft_type != "LORA":
        raise ManifestError(f"the adapter is a {peft_type} adapter; only LoRA is served")
    if adapter_config.get("use_dora"):
        raise ManifestError("the adapter uses DoRA (use_dora), which vLLM does not serve")
    if adapter_config.get("rank_pattern"):
        raise ManifestError("per-module ranks (rank_pattern) are not supported; use one r")
    rank = adapter_config.get("r")
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise ManifestError("adapter_config.json has no positive integer rank r")
    if rank > max_rank:
        raise ManifestError(
            f"the adapter's rank r={rank} is above the maximum {max_rank} "
            f"(raise it with --max-rank if the engine's memory allows)"
        )
    return rank


def _tensors(header: Mapping[str, Any], data_bytes: int) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape, after checking dtypes and that the offsets tile the data."""
    spans: list[tuple[int, int, str]] = []
    shapes: dict[str, tuple[int, ...]] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict):
            raise ManifestError(f"safetensors header entry {name!r} is not an object")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dtype not in _DTYPE_BYTES:
            raise ManifestError(f"tensor {name} has an unknown dtype {dtype!r}")
        if not isinstance(shape, list) or not all(
            isinstance(size, int) and size >= 0 for size in shape
        ):
            raise ManifestError(f"tensor {name} has an invalid shape {shape!r}")
        if not (
            isinstance(offsets, list) and len(offsets) == 2
            and all(isinstance(o, int) for o in offsets) and 0 <= offsets[0] <= offsets[1]
        ):  # fmt: skip
            raise ManifestError(f"tensor {name} has invalid data offsets {offsets!r}")
        if offsets[1] - offsets[0] != math.prod(shape) * _DTYPE_BYTES[dtype]:
            raise ManifestError(f"tensor {name}: its byte length does not match its shape")
        spans.append((offsets[0], offsets[1], name))
        shapes[name] = tuple(shape)
    position = 0
    for begin, end, name in sorted(spans):
        if begin != position:
            raise ManifestError(f"tensor {name} overlaps another or leaves a gap in the file")
        position = end
    if position != data_bytes:
        raise ManifestError(
            f"the safetensors data is {data_bytes} bytes but the header describes {position}"
        )
    if not shapes:
        raise ManifestError("adapter_model.safetensors holds no tensors")
    return shapes


def check_adapter(
    adapter_config: Mapping[str, Any],
    header: Mapping[str, Any],
    data_bytes: int,
    base_config: Mapping[str, Any],
    *,
    max_rank: int = DEFAULT_MAX_ADAPTER_RANK,
) -> AdapterShape:
    """Run the steps in the module docstring; raise ManifestError naming the first
    problem. ``data_bytes`` is the file size less the 8-byte length and the header."""
    rank = _rank(adapter_config, max_rank)  # 1. the config
    declared = adapter_config.get("target_modules")
    targets = set(declared) if isinstance(declared, list) else None  # a regex: not checked
    layers_total = _int(base_config, "num_hidden_layers")
    pairs: dict[str, set[str]] = {}
    layers: set[int] = set()
    leaves: set[str] = set()
    for name, shape in _tensors(header, data_bytes).items():  # 2. the tensors
        match = _KEY.match(name)
        if match is None:
            raise ManifestError(f"tensor {name} is not a LoRA A/B weight; not served")
        module, leaf, side = match["module"], match["leaf"], match["ab"]
        if targets is not None and leaf not in targets and module not in targets:
            raise ManifestError(f"tensor {name} belongs to {leaf}, not in target_modules")
        dims = _dims(base_config, module, leaf)
        if dims is None:
            raise ManifestError(f"tensor {name}: the base model has no {leaf} to check it on")
        layer = _LAYER.search(f".{module}")
        if layer is not None:
            if int(layer[1]) >= layers_total:
                raise ManifestError(
                    f"tensor {name} is for layer {layer[1]}; the base has {layers_total}"
                )
            layers.add(int(layer[1]))
        in_dim, out_dim = dims  # 3. the shapes
        expected = (rank, in_dim) if side == "A" else (out_dim, rank)
        if shape != expected:
            raise ManifestError(
                f"tensor {name} has shape {list(shape)}, expected {list(expected)} "
                f"for rank {rank} on this base model"
            )
        pairs.setdefault(module, set()).add(side)
        leaves.add(leaf)
    unpaired = sorted(module for module, sides in pairs.items() if sides != {"A", "B"})
    if unpaired:
        raise ManifestError(f"LoRA weights without their A/B partner: {', '.join(unpaired[:3])}")
    alpha = adapter_config.get("lora_alpha")
    return AdapterShape(
        rank=rank,
        target_modules=tuple(sorted(leaves)),
        layers=tuple(sorted(layers)),
        tensors=2 * len(pairs),
        lora_alpha=float(alpha) if isinstance(alpha, int | float) else None,
        base_model_name_or_path=str(adapter_config.get("base_model_name_or_path") or ""),
    )
