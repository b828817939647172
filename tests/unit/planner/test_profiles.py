"""appliance/planner/profiles.py: YAML profiles validated by a schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from appliance.errors import ConfigurationError
from appliance.planner.profiles import (
    ModelProfile,
    default_profiles_dir,
    find_profile,
    load_profile,
    load_profiles,
    profile_from_data,
    profile_schema,
    read_chat_template,
)

ISSUE_MODELS = {
    "deepseek-v3",
    "deepseek-v3-0324-fp4",
    "deepseek-r1-fp4",
    "deepseek-v3-0324",
    "deepseek-r1",
    "deepseek-r1-0528",
    "deepseek-r1-distill-qwen-1.5b",
    "deepseek-r1-distill-qwen-7b",
    "deepseek-r1-distill-qwen-14b",
    "deepseek-r1-distill-qwen-32b",
    "deepseek-r1-distill-llama-8b",
    "deepseek-r1-distill-llama-70b",
    "smollm2-135m-instruct",
    "tiny-deepseek-v3",
}


def _raw(name: str) -> dict[str, Any]:
    data = yaml.safe_load((default_profiles_dir() / f"{name}.yaml").read_text())
    assert isinstance(data, dict)
    return data


def test_every_issue_model_has_a_valid_profile(profiles: dict[str, ModelProfile]) -> None:
    assert ISSUE_MODELS <= set(profiles)


def test_deepseek_v3_numbers_match_the_reference(deepseek_v3: ModelProfile) -> None:
    attention = deepseek_v3.attention
    assert (attention.kind, attention.num_layers) == ("mla", 61)
    assert (attention.kv_lora_rank, attention.qk_rope_head_dim) == (512, 64)
    assert deepseek_v3.moe is not None
    assert (deepseek_v3.moe.routed_experts, deepseek_v3.moe.moe_layers) == (256, 58)
    assert deepseek_v3.weight_dtype == "fp8"
    # ~627 GiB of main weights, ~17.7 GiB of it not routed experts (reference §1.2).
    assert deepseek_v3.weight_bytes / 2**30 == pytest.approx(627, rel=0.01)
    assert deepseek_v3.dense_weight_bytes / 2**30 == pytest.approx(17.7, rel=0.02)


def test_parsers_follow_the_recipes(profiles: dict[str, ModelProfile]) -> None:
    assert profiles["deepseek-r1"].reasoning_parser == "deepseek_r1"
    assert profiles["deepseek-r1"].tool_call_parser == "deepseek_v3"
    assert profiles["deepseek-v3"].tool_call_parser == "deepseek_v3"
    assert profiles["deepseek-v3"].reasoning_parser is None
    assert profiles["deepseek-r1-distill-qwen-32b"].reasoning_parser == "deepseek_r1"


@pytest.mark.parametrize(
    ("name", "gigabytes"),
    [  # BF16 sizes, reference §1.3 (params x 2 B)
        ("deepseek-r1-distill-qwen-1.5b", 3.6),
        ("deepseek-r1-distill-qwen-7b", 15.2),
        ("deepseek-r1-distill-llama-8b", 16.1),
        ("deepseek-r1-distill-qwen-14b", 29.5),
        ("deepseek-r1-distill-qwen-32b", 65.5),
        ("deepseek-r1-distill-llama-70b", 141),
    ],
)
def test_distill_weight_sizes(
    profiles: dict[str, ModelProfile], name: str, gigabytes: float
) -> None:
    assert profiles[name].weight_bytes / 1e9 == pytest.approx(gigabytes, rel=0.02)


def test_every_profile_has_license_and_served_name(profiles: dict[str, ModelProfile]) -> None:
    for profile in profiles.values():
        assert profile.license and profile.served_model_name and profile.source


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("license"), "license: Field required"),
        (lambda d: d["attention"].update(kind="mha"), "attention.kind"),
        (lambda d: d["attention"].pop("kv_lora_rank"), "mla attention needs kv_lora_rank"),
        (lambda d: d.update(unknown_key=1), "unknown_key: Extra inputs"),
        (lambda d: d["weights"].update(dtype="int3"), "weights.dtype"),
        (lambda d: d.update(manifest=[{"name": "a", "size": 1, "sha256": "xyz"}]), "sha256"),
        (lambda d: d["moe"].update(moe_layers=99), "moe_layers exceeds"),
        (lambda d: d["weights"].update(dtype="nvfp4", bytes=None), "nvfp4 weights have no"),
        (lambda d: d["vllm"].update(chat_template="../../etc/passwd"), "chat_template"),
        (lambda d: d["vllm"].update(chat_template="template.txt"), "chat_template"),
    ],
    ids=["no-license", "bad-attention", "mla-without-rank", "extra-key", "bad-dtype",
         "bad-sha", "moe-layers", "fp4-unsized", "template-path", "template-suffix"],
)  # fmt: skip
def test_schema_rejects_broken_profiles(mutate: Any, message: str) -> None:
    data = _raw("deepseek-v3")
    mutate(data)
    with pytest.raises(ConfigurationError, match=message):
        profile_from_data(data, source="broken.yaml")


def test_fp4_profiles_are_derived_from_the_fp8_numbers(profiles: dict[str, ModelProfile]) -> None:
    """NVFP4: 0.5625 B per routed-expert parameter (4-bit values, an FP8 scale per 16)."""
    fp8 = profiles["deepseek-r1"]
    for name, source in [("deepseek-r1-fp4", "nvidia/DeepSeek-R1-FP4"),
                         ("deepseek-v3-0324-fp4", "nvidia/DeepSeek-V3-0324-FP4")]:  # fmt: skip
        fp4 = profiles[name]
        assert (fp4.weight_dtype, fp4.source) == ("nvfp4", source)
        assert fp4.attention == fp8.attention and fp4.moe == fp8.moe
        assert fp4.expert_weight_bytes == pytest.approx(653.9e9 * 0.5625, rel=0.001)
        # Non-expert weights: attention kept in BF16 (the larger of the two readings).
        assert fp4.dense_weight_bytes == pytest.approx(28.9e9, rel=0.01)
        assert fp4.weight_bytes / 2**30 == pytest.approx(369.4, rel=0.01)
        assert fp4.served_model_name != fp8.served_model_name


def test_a_profile_names_a_template_that_exists(tmp_path: Path) -> None:
    data = _raw("deepseek-v3")
    path = tmp_path / "deepseek-v3.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigurationError, match=r"tool_chat_template_deepseekv3\.jinja"):
        load_profile(path)
    (tmp_path / "chat_templates").mkdir()
    (tmp_path / "chat_templates" / "tool_chat_template_deepseekv3.jinja").write_text("{{ x }}")
    assert load_profile(path).chat_template == "tool_chat_template_deepseekv3.jinja"
    assert read_chat_template("tool_chat_template_deepseekv3.jinja", tmp_path) == "{{ x }}"


def test_read_chat_template_refuses_paths_and_missing_files(tmp_path: Path) -> None:
    assert "tool" in read_chat_template("tool_chat_template_deepseekr1.jinja")
    with pytest.raises(ConfigurationError, match="not a chat template file name"):
        read_chat_template("../deepseek-v3.yaml")
    with pytest.raises(ConfigurationError, match="cannot read chat template"):
        read_chat_template("missing.jinja", tmp_path)


def test_file_name_must_match_the_name(tmp_path: Path) -> None:
    data = _raw("deepseek-v3")
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigurationError, match="must match the file name"):
        load_profile(path)


def test_not_yaml_and_missing_dir(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text("a: [")
    with pytest.raises(ConfigurationError, match="not YAML"):
        load_profiles(tmp_path)
    with pytest.raises(ConfigurationError, match="not found"):
        load_profiles(tmp_path / "missing")


def test_find_profile_by_name_or_served_name() -> None:
    assert find_profile("DeepSeek-V3").name == "deepseek-v3"
    with pytest.raises(ConfigurationError, match="known: deepseek-r1"):
        find_profile("gpt-5")


def test_schema_is_json_schema() -> None:
    schema = profile_schema()
    assert schema["title"] == "ProfileSchema"
    assert "attention" in schema["properties"]
