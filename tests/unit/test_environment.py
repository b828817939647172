"""appliance/config.py is the one place that reads the process environment: settings
(APPLIANCE_*) and, through process_environment(), the base of an engine's environment."""

from __future__ import annotations

import ast
import inspect
import os
from pathlib import Path

import pytest

from appliance.config import process_environment
from appliance.engine import EngineSupervisor

PACKAGE = Path(__file__).resolve().parents[2] / "appliance"
ALLOWED = {PACKAGE / "config.py"}


def _reads_environment(tree: ast.AST) -> list[int]:
    """Lines that touch os.environ, os.getenv or os.putenv/unsetenv."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == "os" and node.attr in {"environ", "getenv", "putenv", "unsetenv"}:
                lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            if {a.name for a in node.names} & {"environ", "getenv"}:
                lines.append(node.lineno)
    return lines


def test_only_config_reads_the_process_environment() -> None:
    found = {
        str(path.relative_to(PACKAGE.parent)): lines
        for path in sorted(PACKAGE.rglob("*.py"))
        if path not in ALLOWED and (lines := _reads_environment(ast.parse(path.read_text())))
    }
    assert found == {}, "read the environment in appliance/config.py"


def test_process_environment_is_a_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPLIANCE_TEST_MARKER", "1")
    env = process_environment()
    assert env["APPLIANCE_TEST_MARKER"] == "1"
    env["APPLIANCE_TEST_MARKER"] = "changed"
    assert os.environ["APPLIANCE_TEST_MARKER"] == "1"


def test_the_supervisor_takes_its_base_environment_from_the_caller() -> None:
    parameter = inspect.signature(EngineSupervisor).parameters["base_env"]
    assert parameter.default is inspect.Parameter.empty
