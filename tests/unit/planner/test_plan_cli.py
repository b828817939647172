"""appliance/cli/plan.py: `appliance plan` prints, refuses, writes files."""

from __future__ import annotations

import json
from pathlib import Path

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
