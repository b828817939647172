"""appliance/modelstore/tinydeepseek.py: a deterministic tiny DeepSeek-V3."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from appliance.errors import ManifestError
from appliance.modelstore import MANIFEST_NAME, verify_manifest
from appliance.modelstore.tinydeepseek import (
    TINY_DEEPSEEK_V3_CONFIG,
    make_tiny_deepseek_v3,
    tiny_deepseek_v3_shapes,
)
from appliance.planner import find_profile


def test_config_meets_what_vllm_cpu_needs() -> None:
    config = TINY_DEEPSEEK_V3_CONFIG
    assert config["architectures"] == ["DeepseekV3ForCausalLM"]
    assert config["kv_lora_rank"] + config["qk_rope_head_dim"] == 576  # MLA head size
    assert (config["topk_method"], config["scoring_func"]) == ("noaux_tc", "sigmoid")
    assert config["num_attention_heads"] % 2 == 0  # TP=2
    assert config["n_shared_experts"] >= 1


def test_profile_matches_the_generator() -> None:
    profile = find_profile("tiny-deepseek-v3")
    shapes = list(tiny_deepseek_v3_shapes(TINY_DEEPSEEK_V3_CONFIG))
    assert sum(math.prod(shape) for _, shape in shapes) == profile.parameters
    experts = sum(math.prod(s) for name, s in shapes if ".mlp.experts." in name)
    assert experts * 2 == profile.expert_weight_bytes  # bf16
    config = TINY_DEEPSEEK_V3_CONFIG
    assert profile.attention.num_layers == config["num_hidden_layers"]
    assert profile.attention.kv_lora_rank == config["kv_lora_rank"]
    assert profile.moe is not None and profile.moe.routed_experts == config["n_routed_experts"]
    assert profile.vocab_size == config["vocab_size"]


def test_names_follow_the_hf_checkpoint_layout() -> None:
    names = {name for name, _ in tiny_deepseek_v3_shapes(TINY_DEEPSEEK_V3_CONFIG)}
    assert "model.layers.0.mlp.gate_proj.weight" in names  # dense first layer
    assert "model.layers.1.mlp.experts.7.down_proj.weight" in names
    assert "model.layers.1.mlp.gate.e_score_correction_bias" in names
    assert "model.layers.2.mlp.shared_experts.up_proj.weight" in names
    assert "model.layers.0.self_attn.kv_a_proj_with_mqa.weight" in names


def _tokenizer(tmp_path: Path) -> Path:
    directory = tmp_path / "tok"
    directory.mkdir()
    (directory / "tokenizer.json").write_text('{"model": {}}')
    (directory / "tokenizer_config.json").write_text("{}")
    return directory


def test_generation_is_deterministic(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    tokenizer = _tokenizer(tmp_path)
    first = make_tiny_deepseek_v3(tmp_path / "a", tokenizer_dir=tokenizer)
    second = make_tiny_deepseek_v3(tmp_path / "b", tokenizer_dir=tokenizer)
    assert (first / MANIFEST_NAME).read_text() == (second / MANIFEST_NAME).read_text()
    assert verify_manifest(first)
    config = json.loads((first / "config.json").read_text())
    assert config["topk_method"] == "noaux_tc"
    assert (first / "model.safetensors").stat().st_size < 40_000_000
    other = make_tiny_deepseek_v3(tmp_path / "c", tokenizer_dir=tokenizer, seed=1)
    assert (other / MANIFEST_NAME).read_text() != (first / MANIFEST_NAME).read_text()
    # Already there: returned as is.
    assert make_tiny_deepseek_v3(first, tokenizer_dir=tokenizer) == first


def test_needs_the_dev_tokenizer(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="prepare-dev"):
        make_tiny_deepseek_v3(tmp_path / "a", tokenizer_dir=tmp_path)
