"""appliance/adapters: import, checks against the base, list, verify, remove, serve.

The adapters are tiny fake PEFT LoRA adapters with the dev model's shapes and zero
weights, written without torch: safetensors is an 8-byte little-endian header length,
a JSON header and the raw bytes."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any

import pytest

from appliance.adapters import (
    ImportedAdapter,
    check_adapter,
    find_adapter,
    import_adapter,
    list_adapters,
    lora_serving,
    module_dims,
    read_safetensors_header,
    remove_adapter,
    verify_adapter,
)
from appliance.errors import ManifestError
from tests.support.fake_adapters import (
    DEV_BASE,
    DEV_CONFIG,
    DEV_DIMS,
    lora_shapes,
    write_adapter,
    write_base,
    write_safetensors,
)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    store = tmp_path / "data" / "models"
    write_base(store)
    return store


def _import(store: Path, source: Path, name: str = "legal-v1", **kwargs: Any) -> ImportedAdapter:
    kwargs.setdefault("teams", ["legal", "compliance"])
    return import_adapter(source, store, name, base=DEV_BASE, trust_source=True, **kwargs)


# -- the safetensors header -------------------------------------------------------------


def test_header_matches_the_safetensors_package(tmp_path: Path) -> None:
    numpy = pytest.importorskip("numpy")
    save_file = pytest.importorskip("safetensors.numpy").save_file
    path = tmp_path / "a.safetensors"
    save_file({"x.lora_A.weight": numpy.zeros((8, 576), dtype=numpy.float16)}, str(path))
    header, data_bytes = read_safetensors_header(path)
    assert header["x.lora_A.weight"]["shape"] == [8, 576]
    assert data_bytes == 8 * 576 * 2
    ours = tmp_path / "b.safetensors"
    write_safetensors(ours, {"x.lora_A.weight": (8, 576)}, dtype="F16")
    assert read_safetensors_header(ours)[1] == data_bytes


def test_header_longer_than_the_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    with pytest.raises(ManifestError, match="exceeds the file"):
        read_safetensors_header(path)


# -- import -----------------------------------------------------------------------------


def test_import_stores_adapter_beside_its_base_with_a_manifest(store: Path, tmp_path: Path) -> None:
    source = write_adapter(tmp_path / "src", rank=8)
    progress: list[tuple[str, int, int]] = []
    imported = _import(store, source, on_progress=lambda *args: progress.append(args))
    adapter = imported.adapter
    assert adapter.path == store / "adapters" / DEV_BASE / "legal-v1"
    assert adapter.qualified_name == "smollm2-135m-instruct:legal-v1"
    assert (adapter.rank, adapter.teams) == (8, ("legal", "compliance"))
    assert adapter.target_modules == ("q_proj", "v_proj")
    assert imported.shape.tensors == 8 and imported.shape.layers == (0, 1)
    assert set(verify_adapter(adapter)) == {
        "adapter_config.json", "adapter_model.safetensors", "appliance-adapter.json",
    }  # fmt: skip
    manifest = (adapter.path / "MANIFEST.sha256").read_bytes()
    assert adapter.manifest_sha256 == hashlib.sha256(manifest).hexdigest()
    assert progress and progress[-1][1] == progress[-1][2]
    assert [p.name for p in (store / "adapters" / DEV_BASE).iterdir()] == ["legal-v1"]
    with pytest.raises(ManifestError, match="exists"):
        _import(store, source)


@pytest.mark.parametrize(
    "base_name", ["HuggingFaceTB/SmolLM2-135M-Instruct", "/data/models/smollm2-135m-instruct/"]
)
def test_base_named_by_hub_id_or_local_path_is_accepted(
    store: Path, tmp_path: Path, base_name: str
) -> None:
    _import(store, write_adapter(tmp_path / "src", base_name=base_name))


def test_adapter_for_another_base_is_refused(store: Path, tmp_path: Path) -> None:
    source = write_adapter(tmp_path / "src", base_name="meta-llama/Llama-3.1-8B-Instruct")
    with pytest.raises(ManifestError, match=r"trained on 'meta-llama/Llama-3\.1-8B-Instruct'"):
        _import(store, source)
    assert not (store / "adapters" / DEV_BASE / "legal-v1").exists()


def test_missing_base_model_is_refused(store: Path, tmp_path: Path) -> None:
    source = write_adapter(tmp_path / "src")
    with pytest.raises(ManifestError, match="not in the model store"):
        import_adapter(source, store, "x", base="deepseek-v3", teams=["t"], trust_source=True)


def test_wrong_shape_is_refused(store: Path, tmp_path: Path) -> None:
    shapes = lora_shapes(8)
    shapes["base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"] = (576, 8)
    source = write_adapter(tmp_path / "src", shapes=shapes)
    with pytest.raises(ManifestError, match=r"v_proj.lora_B.weight has shape \[576, 8\], "
                       r"expected \[192, 8\]"):  # fmt: skip
        _import(store, source)


def test_tensor_rank_must_equal_the_declared_rank(store: Path, tmp_path: Path) -> None:
    source = write_adapter(tmp_path / "src", rank=8, shapes=lora_shapes(16))
    with pytest.raises(ManifestError, match="expected"):
        _import(store, source)


def test_layer_beyond_the_base_is_refused(store: Path, tmp_path: Path) -> None:
    source = write_adapter(tmp_path / "src", shapes=lora_shapes(8, layers=(30,)))
    with pytest.raises(ManifestError, match="layer 30; the base has 30"):
        _import(store, source)


def test_unpaired_and_unknown_tensors_are_refused(store: Path, tmp_path: Path) -> None:
    shapes = lora_shapes(8, modules=("q_proj",), layers=(0,))
    del shapes["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"]
    with pytest.raises(ManifestError, match="without their A/B partner"):
        _import(store, write_adapter(tmp_path / "a", shapes=shapes, modules=("q_proj",)))
    extra = {**lora_shapes(8), "base_model.model.model.embed_tokens.lora_embedding_A": (8, 10)}
    with pytest.raises(ManifestError, match="not a LoRA A/B weight"):
        _import(store, write_adapter(tmp_path / "b", shapes=extra))


def test_rank_above_the_maximum_is_refused(store: Path, tmp_path: Path) -> None:
    source = write_adapter(tmp_path / "src", rank=128)
    with pytest.raises(ManifestError, match="rank r=128 is above the maximum 64"):
        _import(store, source)
    assert _import(store, source, max_rank=128).adapter.rank == 128


def test_dora_and_pickled_weights_are_refused(store: Path, tmp_path: Path) -> None:
    source = write_adapter(tmp_path / "src")
    config = json.loads((source / "adapter_config.json").read_text())
    (source / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    with pytest.raises(ManifestError, match="DoRA"):
        _import(store, source)
    pickled = write_adapter(tmp_path / "pickled")
    (pickled / "adapter_model.safetensors").rename(pickled / "adapter_model.bin")
    with pytest.raises(ManifestError, match="pickle"):
        _import(store, pickled)


def test_names_and_teams_are_validated(store: Path, tmp_path: Path) -> None:
    source = write_adapter(tmp_path / "src")
    with pytest.raises(ManifestError, match="adapter name"):
        _import(store, source, name="Legal:v1")
    with pytest.raises(ManifestError, match="at least one team"):
        _import(store, source, teams=[" ", ""])


def test_source_manifest_mismatch_leaves_nothing_in_place(store: Path, tmp_path: Path) -> None:
    source = write_adapter(tmp_path / "src")
    (source / "MANIFEST.sha256").write_text(
        f"{'0' * 64}  adapter_config.json\n{'0' * 64}  adapter_model.safetensors\n"
    )
    with pytest.raises(ManifestError, match="sha256 mismatch"):
        import_adapter(source, store, "legal-v1", base=DEV_BASE, teams=["legal"])
    assert list_adapters(store) == []


# -- list, verify, remove, serve ---------------------------------------------------------


def test_list_find_and_remove(store: Path, tmp_path: Path) -> None:
    _import(store, write_adapter(tmp_path / "a"), name="legal-v1")
    _import(store, write_adapter(tmp_path / "b", rank=16), name="hr-v2", teams=["hr"])
    listed = list_adapters(store)
    assert [(a.name, a.rank, a.teams) for a in listed] == [
        ("hr-v2", 16, ("hr",)), ("legal-v1", 8, ("legal", "compliance")),
    ]  # fmt: skip
    assert all(a.size > 0 and len(a.manifest_sha256) == 64 for a in listed)
    assert find_adapter(store, f"{DEV_BASE}:hr-v2").rank == 16
    assert remove_adapter(store, "hr-v2").name == "hr-v2"
    assert [a.name for a in list_adapters(store)] == ["legal-v1"]
    with pytest.raises(ManifestError, match="no adapter 'hr-v2'"):
        remove_adapter(store, "hr-v2")


@pytest.mark.parametrize("tamper", ["teams", "weights", "extra-file"])
def test_tampering_is_detected(store: Path, tmp_path: Path, tamper: str) -> None:
    adapter = _import(store, write_adapter(tmp_path / "src")).adapter
    if tamper == "teams":
        meta = adapter.path / "appliance-adapter.json"
        meta.write_text(meta.read_text().replace('"compliance"', '"everyone"'))
    elif tamper == "weights":
        with (adapter.path / "adapter_model.safetensors").open("r+b") as handle:
            handle.seek(-1, 2)
            handle.write(b"\x01")
    else:
        (adapter.path / "extra.json").write_text("{}")
    with pytest.raises(ManifestError, match="does not match its manifest"):
        verify_adapter(find_adapter(store, "legal-v1"))
    with pytest.raises(ManifestError):
        lora_serving(store, DEV_BASE, DEV_BASE)


def test_lora_serving_names_adapters_model_colon_adapter(store: Path, tmp_path: Path) -> None:
    assert lora_serving(store, DEV_BASE, DEV_BASE) is None
    _import(store, write_adapter(tmp_path / "a", rank=8), name="legal-v1")
    _import(store, write_adapter(tmp_path / "b", rank=16), name="hr-v2", teams=["hr"])
    serving = lora_serving(store, DEV_BASE, DEV_BASE)
    assert serving is not None
    assert [m.name for m in serving.modules] == [f"{DEV_BASE}:hr-v2", f"{DEV_BASE}:legal-v1"]
    assert all(m.path.is_absolute() and m.path.is_dir() for m in serving.modules)
    args = serving.args()
    assert args[args.index("--max-lora-rank") + 1] == "16"


# -- pure shape checks on other architectures -------------------------------------------

MLA_CONFIG = {
    "hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
    "kv_lora_rank": 512, "qk_rope_head_dim": 64, "qk_nope_head_dim": 32, "v_head_dim": 32,
    "q_lora_rank": 48, "intermediate_size": 128, "moe_intermediate_size": 16,
    "n_shared_experts": 1, "vocab_size": 100,
}  # fmt: skip


def test_mla_and_expert_shapes() -> None:
    shapes = {
        "model.layers.0.self_attn.kv_b_proj.lora_A.weight": (4, 512),
        "model.layers.0.self_attn.kv_b_proj.lora_B.weight": (4 * 64, 4),
        "model.layers.1.mlp.experts.3.down_proj.lora_A.weight": (4, 16),
        "model.layers.1.mlp.experts.3.down_proj.lora_B.weight": (64, 4),
    }
    header = {name: {"dtype": "F32", "shape": list(shape), "data_offsets": [0, 0]}
              for name, shape in shapes.items()}  # fmt: skip
    offset = 0
    for info in header.values():
        size = 4 * info["shape"][0] * info["shape"][1]  # type: ignore[index]
        info["data_offsets"] = [offset, offset + size]
        offset += size
    config = {"r": 4, "target_modules": ["kv_b_proj", "down_proj"],
              "base_model_name_or_path": "tiny"}  # fmt: skip
    shape = check_adapter(config, header, offset, MLA_CONFIG)
    assert shape.target_modules == ("down_proj", "kv_b_proj") and shape.layers == (0, 1)
    with pytest.raises(ManifestError, match="describes"):
        check_adapter(config, header, offset + 4, MLA_CONFIG)


def test_module_dims_for_memory_estimates() -> None:
    dims = module_dims(DEV_CONFIG, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                    "up_proj", "down_proj", "unknown"])  # fmt: skip
    assert dims == [*DEV_DIMS.values(), (576, 1536), (576, 1536), (1536, 576)]


# -- the CLI ----------------------------------------------------------------------------


def test_cli_import_list_verify_remove(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from appliance.cli.main import app

    for name in [name for name in os.environ if name.startswith("APPLIANCE_")]:
        monkeypatch.delenv(name)
    config = tmp_path / "appliance.yaml"
    config.write_text(json.dumps({"data_dir": str(tmp_path / "data")}))
    write_base(tmp_path / "data" / "models")
    source = write_adapter(tmp_path / "src", rank=8)
    runner = CliRunner()

    def cli(*args: str) -> Any:
        return runner.invoke(app, [*args, "--config", str(config)], terminal_width=200)

    empty = cli("adapters", "list")
    assert empty.exit_code == 0 and "no adapters" in empty.output
    refused = cli("adapters", "import", str(source), "legal-v1", "--base", DEV_BASE,
                  "--teams", "legal")  # fmt: skip
    assert refused.exit_code == 1 and "--trust-source" in str(refused.exception)
    done = cli("adapters", "import", str(source), "legal-v1", "--base", DEV_BASE,
               "--teams", "legal,compliance", "--trust-source")  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "smollm2-135m-instruct:legal-v1 (rank 8" in done.output
    listed = cli("adapters", "list")
    assert listed.exit_code == 0
    for cell in ("legal-v1", DEV_BASE, "8", "legal,", "compliance", "KiB"):
        assert cell in listed.output
    verified = cli("adapters", "verify", f"{DEV_BASE}:legal-v1")
    assert verified.exit_code == 0 and "3 files match" in verified.output
    big = str(write_adapter(tmp_path / "big", rank=32))
    too_big = cli("adapters", "import", big, "big", "--base", DEV_BASE, "--teams", "t",
                  "--trust-source", "--max-rank", "16")  # fmt: skip
    assert too_big.exit_code == 1 and "above the maximum 16" in str(too_big.exception)
    removed = cli("adapters", "remove", "legal-v1")
    assert removed.exit_code == 0 and "removed adapter" in removed.output
    assert "no adapters" in cli("adapters", "list").output
