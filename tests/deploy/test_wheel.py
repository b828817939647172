"""The wheel alone carries everything (issue 14): built from the checkout, installed
into a fresh venv outside it, the planner finds its model profiles, migrations run and
the UI serves its templates and assets. An image or a wheelhouse carries nothing more.

The fresh venv takes the wheel's dependencies from the dev venv's site-packages through
a plain path line (which, unlike a site directory, runs none of that directory's
``.pth`` files, so the checkout's editable install stays out of it)."""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(out), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (built,) = out.glob("sovereign_appliance-*.whl")
    return built


@pytest.fixture(scope="module")
def fresh_python(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
         "--no-index", str(wheel)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    fresh_site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    dependencies = "\n".join(site.getsitepackages())
    Path(fresh_site, "dev-dependencies.pth").write_text(dependencies + "\n")
    return python


def run_outside(python: Path, code: str, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPLIANCE_", "PYTHON"))}
    done = subprocess.run(
        [str(python), "-c", textwrap.dedent(code)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_wheel_lists_profiles_migrations_and_ui_assets(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for profile in (ROOT / "appliance" / "models").glob("*.yaml"):
        assert f"appliance/models/{profile.name}" in names
    templates = sorted((ROOT / "appliance" / "models" / "chat_templates").glob("*.jinja"))
    assert templates
    for template in templates:
        assert f"appliance/models/chat_templates/{template.name}" in names
    for expected in (
        "appliance/db/migrations/env.py",
        "appliance/db/migrations/script.py.mako",
        "appliance/db/migrations/versions/0002_audit_log.py",
        "appliance/ui/templates/chat.html",
        "appliance/ui/static/app.css",
        "appliance/py.typed",
    ):
        assert expected in names, expected
    assert not any(name.startswith("tests/") for name in names)


def test_the_installed_wheel_plans_migrates_and_serves_the_ui(
    fresh_python: Path, tmp_path: Path
) -> None:
    out = run_outside(
        fresh_python,
        """
        import json, appliance
        from pathlib import Path
        from typer.testing import CliRunner
        from fastapi.testclient import TestClient
        from appliance.cli import app as cli
        from appliance.config import Settings
        from appliance.db import create_db_engine, upgrade_database
        from appliance.gateway import create_app
        from appliance.keys.deployment import DeploymentSecrets

        plan = CliRunner().invoke(
            cli, ["plan", "--model", "deepseek-v3", "--gpu", "h200", "-f", "json"]
        )
        assert plan.exit_code == 0, plan.output
        # The chat template the plan names comes from the installed package too.
        helm = CliRunner().invoke(
            cli, ["plan", "--model", "deepseek-r1", "--gpu", "h200", "-f", "helm-values"]
        )
        assert helm.exit_code == 0, helm.output
        import yaml
        templates = yaml.safe_load(helm.output)["engine"]["chatTemplates"]
        engine = create_db_engine("sqlite:///fresh.db")
        upgrade_database(engine)
        settings = Settings(
            data_dir=Path("data"), database={"url": "sqlite:///fresh.db"},
            engine={"enabled": False},
        )
        secrets = DeploymentSecrets(engine_api_key="x", api_key_pepper="p")
        with TestClient(create_app(settings, secrets=secrets)) as client:
            login = client.get("/ui/login")
            css = client.get("/ui/static/app.css")
        print(json.dumps({
            "module": appliance.__file__,
            "plan": json.loads(plan.output)["model"],
            "templates": {name: len(text) for name, text in templates.items()},
            "login": login.status_code, "css": css.status_code, "css_bytes": len(css.content),
        }))
        """,
        tmp_path,
    )
    result = json.loads(out.strip().splitlines()[-1])
    assert not result["module"].startswith(str(ROOT)), result["module"]  # the wheel's copy
    assert result["plan"] == "deepseek-v3"
    template = ROOT / "appliance/models/chat_templates/tool_chat_template_deepseekr1.jinja"
    assert result["templates"] == {template.name: len(template.read_text(encoding="utf-8"))}
    assert result["login"] == 200 and result["css"] == 200 and result["css_bytes"] > 0
