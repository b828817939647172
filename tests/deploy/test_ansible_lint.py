"""ansible-lint (production profile), a syntax check of site.yml, the house layout of
every role, and the role argument specs checked against the settings schema."""

from __future__ import annotations

import re
import subprocess
import types
import typing
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from appliance.config import Settings
from appliance.planner.report import render_ansible_vars
from tests.deploy.ansible_harness import ANSIBLE_DIR, VENV_BIN, ansible_available, run_playbook

ROLES = sorted(path for path in (ANSIBLE_DIR / "roles").iterdir() if path.is_dir())
EXPECTED_ROLES = {
    "appliance_preflight", "appliance_model_store", "appliance_engine", "appliance_gateway",
    "appliance_database", "appliance_identity", "appliance_egress_lockdown",
    "appliance_observability", "appliance_wheelhouse", "appliance_audit_jobs",
}  # fmt: skip


def _specs(role: Path) -> dict[str, dict[str, typing.Any]]:
    data = yaml.safe_load((role / "meta/argument_specs.yml").read_text())
    return data["argument_specs"]["main"]["options"]


def test_all_roles_exist_with_the_house_layout():
    assert {role.name for role in ROLES} == EXPECTED_ROLES
    for role in ROLES:
        assert (role / "meta/argument_specs.yml").exists(), role.name
        assert (role / "meta/main.yml").exists(), role.name
        main = yaml.safe_load((role / "tasks/main.yml").read_text())
        # tasks/main.yml only includes.
        for task in main:
            modules = set(task) - {"name", "when", "tags"}
            assert modules <= {"ansible.builtin.include_tasks", "ansible.builtin.include_vars"}, (
                role.name,
                task,
            )


def test_every_role_variable_is_prefixed_and_specified():
    for role in ROLES:
        specs = _specs(role)
        assert all(name.startswith(role.name + "_") for name in specs), role.name
        defaults = role / "defaults/main.yml"
        if defaults.exists():
            names = set(yaml.safe_load(defaults.read_text()) or {})
            assert names <= set(specs), (role.name, names - set(specs))


def test_engine_spec_covers_the_planners_ansible_vars():
    from appliance.planner import find_profile, gpu_type, make_plan
    from appliance.planner.capacity import PlanRequest

    profile = find_profile("deepseek-v3")
    request = PlanRequest(model="deepseek-v3", gpu="h200", gpus_per_node=8)
    plan = make_plan(profile, gpu_type("h200"), request)
    planned = yaml.safe_load(render_ansible_vars(plan, "/models/deepseek-v3"))
    specs = _specs(ANSIBLE_DIR / "roles/appliance_engine")
    assert set(planned) <= set(specs)
    assert all(specs[name].get("required") for name in planned)


_TYPES = {"int": int, "str": str, "bool": bool, "float": float, "list": list, "dict": dict}
_SETTING = re.compile(r"\(((?:engine|gateway|database|oidc|audit|auth)\.[a-z_]+)\)")


def _setting_type(dotted: str) -> typing.Any:
    section, field = dotted.split(".")
    model = typing.get_type_hints(Settings)[section]
    assert issubclass(model, BaseModel)
    assert field in model.model_fields, f"{dotted} is not in the settings schema"
    annotation = model.model_fields[field].annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):  # X | None
        (annotation,) = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    return typing.get_origin(annotation) or annotation


def test_role_options_naming_a_setting_match_its_type():
    """The settings schema is the single source: an option whose description names a
    setting (e.g. "(engine.port)") exists there and has a compatible type."""
    checked = 0
    for role in ROLES:
        for name, spec in _specs(role).items():
            match = _SETTING.search(spec.get("description", ""))
            if not match:
                continue
            expected = _setting_type(match.group(1))
            declared = _TYPES[spec["type"]]
            if expected is float:
                assert declared in (float, int), (name, match.group(1))
            elif expected is typing.Literal:  # Literal["cpu", "gpu"] and the like
                assert declared is str and spec.get("choices"), name
            elif expected.__name__ in ("SecretStr", "Path"):
                assert declared is str, name
            else:
                assert declared is expected, (name, match.group(1), expected)
            checked += 1
    assert checked >= 10


@pytest.mark.skipif(not ansible_available(), reason="ansible-core not installed")
def test_site_syntax_check(tmp_path):
    run = run_playbook(
        ANSIBLE_DIR / "site.yml", ANSIBLE_DIR / "inventory/example.yml", "--syntax-check"
    )
    assert run.returncode == 0, run.output


@pytest.mark.skipif(
    not (VENV_BIN / "ansible-lint").exists(), reason="ansible-lint not installed (dev extra)"
)
def test_ansible_lint_production_profile():
    result = subprocess.run(
        [str(VENV_BIN / "ansible-lint"), "--profile", "production", "--nocolor", "."],
        cwd=ANSIBLE_DIR, capture_output=True, text=True, timeout=300,
        env={"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": str(Path.home()),
             "ANSIBLE_HOME": str(Path.home() / ".ansible")},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
