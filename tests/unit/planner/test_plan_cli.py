"""appliance/cli/plan.py: `appliance plan` prints, refuses, writes files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from appliance.cli.main import app

runner = CliRunner()


def test_done_when_h200_prints_a_fitting_tp8_plan() -> None:
    result = runner.invoke(
        app, ["plan", "--model", "deepseek-v3", "--gpu", "h200", "--gpus-per-node", "8",
              "--nodes", "1"], terminal_width=200,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "TP8 + EP8" in result.output
    assert "KV tokens" in result.output and "max concurrency" in result.output


def test_done_when_one_h100_node_is_refused() -> None:
    result = runner.invoke(app, ["plan", "-m", "deepseek-v3", "--gpu", "h100"])
    assert result.exit_code == 2
    assert "does not fit" in result.output
    assert "would fit: 2 nodes x 8 x h100" in result.output


def test_refusal_as_json() -> None:
    result = runner.invoke(app, ["plan", "-m", "deepseek-v3", "--gpu", "h100", "-f", "json"])
    assert result.exit_code == 2
    data = json.loads(result.stdout)
    assert data["fits"] is False and data["suggestions"]


def test_done_when_two_h100_nodes_emit_head_and_worker(tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    result = runner.invoke(
        app, ["plan", "-m", "deepseek-v3", "--gpu", "h100", "--nodes", "2", "-f", "json",
              "-o", str(out), "--master-addr", "10.0.0.1"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    roles = [command["role"] for command in data["commands"]]
    assert roles == ["head", "worker"]
    assert "--headless" in data["commands"][1]["extra_args"]


def test_helm_and_ansible_formats() -> None:
    helm = runner.invoke(app, ["plan", "-m", "deepseek-r1", "--gpu", "h200", "-f", "helm-values"])
    assert helm.exit_code == 0, helm.output
    assert yaml.safe_load(helm.stdout)["engine"]["parallelism"]["tensor"] == 8
    ansible = runner.invoke(app, ["plan", "-m", "deepseek-r1", "--gpu", "h200",
                                  "-f", "ansible-vars"])  # fmt: skip
    assert yaml.safe_load(ansible.stdout)["appliance_engine_nodes"] == 1


def test_unknown_gpu_and_model_are_one_line_errors() -> None:
    result = runner.invoke(app, ["plan", "-m", "deepseek-v3", "--gpu", "v100"])
    assert result.exit_code != 0
    assert "unknown GPU type" in str(result.exception)
    result = runner.invoke(app, ["plan", "-m", "nope", "--gpu", "h200"])
    assert "unknown model" in str(result.exception)


def test_forced_layout_flags() -> None:
    result = runner.invoke(
        app, ["plan", "-m", "deepseek-v3", "--gpu", "h100", "--nodes", "2", "--tp", "16",
              "--no-ep", "-f", "json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["summary"]["layout"] == "TP16"


# --- --fabric: DeepEP (wide EP) only over a declared RDMA fabric ------------------------

_TWO_H200 = ["plan", "-m", "deepseek-v3", "--gpu", "h200", "--nodes", "2"]


def test_fabric_rdma_plans_wide_ep_and_enables_the_charts_rdma() -> None:
    result = runner.invoke(app, [*_TWO_H200, "--goal", "throughput", "--fabric", "rdma",
                                 "-f", "helm-values"])  # fmt: skip
    assert result.exit_code == 0, result.output
    engine = yaml.safe_load(result.stdout)["engine"]
    assert engine["rdma"] == {"enabled": True}
    for role in ("leader", "worker"):
        args = engine[role]["args"]
        assert args[args.index("--all2all-backend") + 1] == "deepep_low_latency"
    assert "engine.rdma.runAsRoot: true" in result.stdout  # the header says what the chart needs


def test_without_a_fabric_throughput_falls_back_to_tp_pp() -> None:
    result = runner.invoke(app, [*_TWO_H200, "--goal", "throughput", "-f", "helm-values"])
    assert result.exit_code == 0, result.output
    engine = yaml.safe_load(result.stdout)["engine"]
    assert engine["parallelism"]["pipeline"] == 2 and "rdma" not in engine
    assert "deepep" not in result.stdout


def test_fabric_rdma_without_wide_ep_still_attaches_the_fabric() -> None:
    # TP8 x PP2: NCCL between the nodes uses the fabric; no DeepEP, so no root needed
    result = runner.invoke(app, [*_TWO_H200, "--fabric", "rdma", "-f", "helm-values"])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.stdout)["engine"]["rdma"] == {"enabled": True}
    assert "deepep" not in result.stdout and "runAsRoot" not in result.stdout


def test_forced_wide_ep_without_a_fabric_is_refused_naming_the_fix() -> None:
    result = runner.invoke(app, [*_TWO_H200, "--dp", "16", "--ep"], terminal_width=400)
    assert result.exit_code == 2
    assert "does not fit" in result.output and "DeepEP" in result.output
    assert "declare it with --fabric rdma" in result.output
    assert "would fit: 2 nodes x 8 x h200 (DP16 + EP16" in result.output
    as_json = runner.invoke(app, [*_TWO_H200, "--dp", "16", "--ep", "-f", "json"])
    data = json.loads(as_json.stdout)
    assert data["fits"] is False and "--fabric rdma" in data["reason"]


def test_unknown_fabric_is_a_usage_error() -> None:
    result = runner.invoke(app, [*_TWO_H200, "--fabric", "ethernet"])
    assert result.exit_code == 2 and "ethernet" in result.output


def test_embedding_engine_in_the_table_and_json() -> None:
    args = ["plan", "-m", "smollm2-135m-instruct", "--gpu", "h100", "--gpus-per-node", "1",
            "--embedding-model", "smollm2-135m-instruct"]  # fmt: skip
    result = runner.invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "embedding engine" in result.output and "GPUs in all" in result.output
    assert "--runner pooling --convert embed" in result.output
    data = json.loads(runner.invoke(app, [*args, "-f", "json"]).stdout)
    assert data["embedding"]["served_model_name"] == "smollm2-135m-embed"
    assert data["gpu_memory_utilization"] == round(
        0.9 - data["embedding"]["gpu_memory_utilization"], 2
    )
    separate = runner.invoke(
        app, [*args, "--embedding-placement", "separate", "--embedding-gpus", "2", "-f", "json"]
    )
    assert json.loads(separate.stdout)["summary"]["gpus_total"] == 3


def test_lora_slots_in_the_plan_and_refused_when_too_many() -> None:
    args = ["plan", "-m", "smollm2-135m-instruct", "--gpu", "cpu", "--gpus-per-node", "1"]
    result = runner.invoke(app, [*args, "--max-loras", "4", "-f", "json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert plan["request"]["max_lora_rank"] == 16  # vLLM's default rank
    assert plan["memory"]["lora_bytes"] > 0
    assert "--enable-lora" in plan["commands"][0]["extra_args"]
    table = runner.invoke(app, [*args, "--max-loras", "4", "--max-lora-rank", "16"],
                          terminal_width=200)  # fmt: skip
    assert "LoRA adapter slots per GPU" in table.output and "4 x rank 16" in table.output
    refused = runner.invoke(app, [*args, "--max-loras", "64", "--max-lora-rank", "512"])
    assert refused.exit_code != 0 and "LoRA slots" in refused.output
    bad = runner.invoke(app, [*args, "--max-loras", "1", "--max-lora-rank", "1024"])
    assert bad.exit_code != 0 and "above vLLM's largest" in str(bad.exception)


_DEV_CPU = ["plan", "-m", "smollm2-135m-instruct", "--gpu", "cpu", "--gpus-per-node", "1"]


def _store_with_adapter(tmp_path: Path, rank: int = 8) -> Path:
    from appliance.adapters import import_adapter
    from tests.support.fake_adapters import DEV_BASE, write_adapter, write_base

    store = tmp_path / "data" / "models"
    write_base(store)
    import_adapter(write_adapter(tmp_path / "src", rank=rank), store, "legal-v1",
                   base=DEV_BASE, teams=["legal"], trust_source=True)  # fmt: skip
    return store


def test_stored_adapters_get_slots_and_are_pinned_in_the_values(tmp_path: Path) -> None:
    from appliance.adapters import list_adapters

    store = _store_with_adapter(tmp_path, rank=12)
    (stored,) = list_adapters(store)
    args = [*_DEV_CPU, "--model-store", str(store)]
    plan = json.loads(runner.invoke(app, [*args, "-f", "json"]).stdout)
    # No --max-loras: the slots the engine would take for them, in the memory.
    assert (plan["request"]["max_loras"], plan["request"]["max_lora_rank"]) == (1, 12)
    assert plan["memory"]["lora_bytes"] > 0
    result = runner.invoke(app, [*args, "-f", "helm-values"])
    assert result.exit_code == 0, result.output
    engine = yaml.safe_load(result.stdout)["engine"]
    assert engine["adapters"]["modules"] == [
        {"name": "legal-v1", "rank": 12, "manifestSha256": stored.manifest_sha256}
    ]
    # 12 rounded up to a rank vLLM accepts, as the memory was planned.
    assert (engine["adapters"]["maxLoras"], engine["adapters"]["maxLoraRank"]) == (1, 16)
    assert "--enable-lora" not in engine["leader"]["args"]
    ansible = yaml.safe_load(runner.invoke(app, [*args, "-f", "ansible-vars"]).stdout)
    assert ansible["appliance_adapters"][0]["manifest_sha256"] == stored.manifest_sha256
    small = runner.invoke(app, [*args, "--max-loras", "2", "--max-lora-rank", "8",
                                "-f", "helm-values"])  # fmt: skip
    assert small.exit_code != 0 and "--max-lora-rank 12" in str(small.exception)


def test_an_adapter_that_fails_its_manifest_is_not_pinned(tmp_path: Path) -> None:
    from appliance.adapters import list_adapters

    store = _store_with_adapter(tmp_path)
    (stored,) = list_adapters(store)
    (stored.path / "adapter_config.json").write_text("{}", encoding="utf-8")
    from appliance.errors import ManifestError

    result = runner.invoke(app, [*_DEV_CPU, "--model-store", str(store), "-f", "helm-values"])
    assert result.exit_code != 0 and isinstance(result.exception, ManifestError)
    missing = runner.invoke(app, [*_DEV_CPU, "--model-store", str(tmp_path / "nowhere")])
    assert missing.exit_code != 0 and "not a directory" in str(missing.exception)
    assert "manifestSha256" not in result.stdout


def test_the_configuration_asks_for_the_embedding_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store_with_adapter(tmp_path)
    config = tmp_path / "appliance.yaml"
    config.write_text(yaml.safe_dump({
        "data_dir": str(tmp_path / "data"),
        "embedding_engine": {"served_model_name": "dev-embed", "max_model_len": 256},
    }), encoding="utf-8")  # fmt: skip
    monkeypatch.chdir(tmp_path)  # ./appliance.yaml alone changes nothing: -c names it
    plain = yaml.safe_load(runner.invoke(app, [*_DEV_CPU, "-f", "helm-values"]).stdout)
    assert "embeddingEngine" not in plain and "adapters" not in plain["engine"]
    result = runner.invoke(app, [*_DEV_CPU, "-c", str(config), "-f", "helm-values"])
    assert result.exit_code == 0, result.output
    values = yaml.safe_load(result.stdout)
    embedding = values["embeddingEngine"]
    assert embedding["model"]["servedModelName"] == "dev-embed"
    assert embedding["maxModelLen"] == 256
    assert [m["name"] for m in values["engine"]["adapters"]["modules"]] == ["legal-v1"]
    assert store == tmp_path / "data" / "models"
    off = yaml.safe_load(config.read_text(encoding="utf-8"))
    off["embedding_engine"]["enabled"] = False
    config.write_text(yaml.safe_dump(off), encoding="utf-8")
    result = runner.invoke(app, [*_DEV_CPU, "-c", str(config), "-f", "helm-values"])
    assert "embeddingEngine" not in yaml.safe_load(result.stdout)
