"""The CLI side of per-team adapters: `engine command` shows the LoRA flags for the
model's adapters, and `keys create --team` gives a key the team adapters check."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import yaml
from typer.testing import CliRunner

from appliance.adapters import import_adapter
from appliance.cli.main import app
from appliance.config import load_settings
from appliance.db import create_db_engine
from appliance.identity import ApiKeyService
from appliance.planner import PlanRequest, find_profile, gpu_type, make_plan, render_json
from tests.support.fake_adapters import DEV_BASE, write_adapter, write_base


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "appliance.yaml"
    model_dir = tmp_path / "data" / "models" / DEV_BASE
    engine = {"served_model_name": "dev", "model_dir": str(model_dir)}
    path.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"), "engine": engine}))
    return path


def test_engine_command_loads_the_models_adapters(tmp_path: Path) -> None:
    config = _config(tmp_path)
    runner = CliRunner()
    before = runner.invoke(app, ["engine", "command", "--config", str(config)])
    assert before.exit_code == 0, before.output
    assert "--enable-lora" not in before.output  # no adapters: no LoRA
    store = tmp_path / "data" / "models"
    write_base(store)
    import_adapter(write_adapter(tmp_path / "src"), store, "legal-v1", base=DEV_BASE,
                   teams=["legal"], trust_source=True)  # fmt: skip
    result = runner.invoke(app, ["engine", "command", "--config", str(config)])
    assert result.exit_code == 0, result.output
    argv = shlex.split(result.output.strip().splitlines()[-1])
    assert argv[argv.index("--max-lora-rank") + 1] == "8"
    (module,) = [json.loads(arg) for arg in argv[argv.index("--lora-modules") + 1 :]]
    assert module["name"] == "dev:legal-v1" and module["base_model_name"] == "dev"
    assert Path(module["path"]) == (store / "adapters" / DEV_BASE / "legal-v1").resolve()


def test_keys_create_with_a_team(tmp_path: Path) -> None:
    config = _config(tmp_path)
    runner = CliRunner()
    assert runner.invoke(app, ["db", "upgrade", "--config", str(config)]).exit_code == 0
    result = runner.invoke(app, ["keys", "create", "--name", "x", "--owner", "y",
                                 "--team", "legal", "--config", str(config)])  # fmt: skip
    assert result.exit_code == 0, result.output
    settings = load_settings(config)
    database = create_db_engine(settings.database_url)
    try:
        (record,) = ApiKeyService(database, "pepper").list()
    finally:
        database.dispose()
    assert record.team == "legal" and record.principal().team == "legal"
    listed = runner.invoke(app, ["keys", "list", "--config", str(config)], env={"COLUMNS": "200"})
    assert "legal" in listed.output


def test_every_node_of_a_plan_loads_the_adapters(tmp_path: Path) -> None:
    config = _config(tmp_path)
    store = tmp_path / "data" / "models"
    write_base(store)
    import_adapter(write_adapter(tmp_path / "src"), store, "legal-v1", base=DEV_BASE,
                   teams=["legal"], trust_source=True)  # fmt: skip
    profile = find_profile("tiny-deepseek-v3")
    request = PlanRequest(profile.name, "cpu", 1, max_model_len=512, memory_mib=2048)
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(render_json(make_plan(profile, gpu_type("cpu"), request)))
    result = CliRunner().invoke(app, ["engine", "args", "--plan", str(plan_file), "--model-dir",
                                      str(store / DEV_BASE), "--config", str(config)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "--enable-lora" in result.stdout and ":legal-v1" in result.stdout


def test_keys_create_refuses_an_odd_team(tmp_path: Path) -> None:
    config = _config(tmp_path)
    result = CliRunner().invoke(app, ["keys", "create", "--name", "x", "--owner", "y",
                                      "--team", "a team", "--config", str(config)])  # fmt: skip
    assert result.exit_code != 0 and "--team" in str(result.exception)
