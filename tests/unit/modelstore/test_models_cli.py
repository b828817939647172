"""appliance/cli/models.py (list, show, check, import, verify) and the plan commands
of appliance/cli/engine.py (args)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from appliance.cli.main import app
from appliance.planner import PlanRequest, find_profile, gpu_type, make_plan, render_json

runner = CliRunner()


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in list(os.environ):
        if name.startswith("APPLIANCE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "appliance.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data")}))
    return config


def test_list_and_show() -> None:
    listed = runner.invoke(app, ["models", "list"], terminal_width=200)
    assert listed.exit_code == 0, listed.output
    assert "deepseek-v3" in listed.output and "tiny-deepseek-v3" in listed.output
    shown = runner.invoke(app, ["models", "show", "deepseek-r1"])
    assert shown.exit_code == 0
    assert yaml.safe_load(shown.stdout)["reasoning_parser"] == "deepseek_r1"


def test_check_passes_and_reports_every_broken_profile(tmp_path: Path) -> None:
    assert runner.invoke(app, ["models", "check"]).exit_code == 0
    broken = tmp_path / "profiles"
    broken.mkdir()
    (broken / "a.yaml").write_text("name: a\n")
    (broken / "b.yaml").write_text("name: [\n")
    result = runner.invoke(app, ["models", "check", "--profiles-dir", str(broken)],
                           terminal_width=300)  # fmt: skip
    assert result.exit_code == 1
    assert "a.yaml" in result.output and "b.yaml" in result.output
    schema = runner.invoke(app, ["models", "check", "--schema"])
    assert '"ProfileSchema"' in schema.stdout


def test_import_and_verify(tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "model.safetensors").write_bytes(b"w" * 10_000)
    (staging / "config.json").write_text("{}")
    refused = runner.invoke(app, ["models", "import", str(staging), "my-model"])
    assert refused.exit_code == 1 and "--trust-source" in str(refused.exception)
    (staging / "MANIFEST.sha256").write_text(
        f"{hashlib.sha256(b'w' * 10_000).hexdigest()}  model.safetensors\n"
        f"{hashlib.sha256(b'{}').hexdigest()}  config.json\n"
    )
    result = runner.invoke(app, ["models", "import", str(staging), "my-model"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "imported 2 files" in " ".join(result.output.split())
    verified = runner.invoke(app, ["models", "verify", "my-model"], terminal_width=200)
    assert verified.exit_code == 0 and "2 files match" in " ".join(verified.output.split())
    (tmp_path / "data" / "models" / "my-model" / "config.json").write_text('{"x": 1}')
    failed = runner.invoke(app, ["models", "verify", "my-model"])
    assert failed.exit_code == 1 and "sha256 mismatch" in str(failed.exception)


def test_engine_args_from_a_plan(tmp_path: Path) -> None:
    profile = find_profile("deepseek-v3")
    plan = make_plan(profile, gpu_type("h100"), PlanRequest("deepseek-v3", "h100", 8, nodes=2))
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(render_json(plan))
    head = runner.invoke(app, ["engine", "args", "--plan", str(plan_file), "--role", "head",
                               "--master-addr", "10.9.8.7"])  # fmt: skip
    assert head.exit_code == 0, head.output
    assert "appliance.engine.vllm_cli serve" in head.stdout and "--headless" not in head.stdout
    assert "--master-addr 10.9.8.7" in head.stdout
    assert "VLLM_API_KEY='<shared secret>'" in head.stdout
    worker = runner.invoke(app, ["engine", "args", "--plan", str(plan_file), "--role", "worker",
                                 "--master-addr", "10.9.8.7"])  # fmt: skip
    assert worker.exit_code == 0
    assert "appliance.engine.vllm_cli serve" in worker.stdout and "--headless" in worker.stdout
    bad = runner.invoke(app, ["engine", "args", "--plan", str(plan_file), "--role", "boss"])
    assert "--role must be head or worker" in str(bad.exception)
    missing = runner.invoke(app, ["engine", "args", "--plan", str(plan_file)])
    assert "--master-addr" in str(missing.exception)


def test_engine_start_refuses_an_unverified_model(tmp_path: Path) -> None:
    profile = find_profile("tiny-deepseek-v3")
    request = PlanRequest(profile.name, "cpu", 1, max_model_len=512, memory_mib=2048)
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(render_json(make_plan(profile, gpu_type("cpu"), request)))
    model_dir = tmp_path / "unverified"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    result = runner.invoke(app, ["engine", "start", "--plan", str(plan_file),
                                 "--model-dir", str(model_dir)])  # fmt: skip
    assert result.exit_code == 1
    assert "refusing to serve" in str(result.exception)


def test_engine_args_for_a_cpu_tp2_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    profile = find_profile("tiny-deepseek-v3")
    request = PlanRequest(profile.name, "cpu", 2, max_model_len=512, memory_mib=2048)
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(render_json(make_plan(profile, gpu_type("cpu"), request)))
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    result = runner.invoke(app, ["engine", "args", "--plan", str(plan_file)])
    assert result.exit_code == 0, result.output
    assert "VLLM_CPU_OMP_THREADS_BIND='0|1'" in result.stdout
    assert "--tensor-parallel-size 2" in result.stdout
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    result = runner.invoke(app, ["engine", "args", "--plan", str(plan_file)])
    assert "cannot bind 2 CPU ranks to 1 cores" in str(result.exception)
