"""Render the appliance chart with Helm's own engine (the Go SDK inside the PyPI package
helm-python-sdk) and validate the objects against Kubernetes' schemas (kubernetes-validate).

Without helm-python-sdk the rendering tests skip with the reason; with
APPLIANCE_TEST_REQUIRE_HELM=1 (CI) they fail instead.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from appliance.cli.main import app

__all__ = [
    "CHART",
    "PROFILES",
    "Rendered",
    "base_values",
    "helm_sdk",
    "merge",
    "plan_values",
    "render",
]

CHART = Path(__file__).resolve().parents[2] / "helm" / "appliance"
REQUIRE_HELM_ENV = "APPLIANCE_TEST_REQUIRE_HELM"
RELEASE = "appliance"
NAMESPACE = "llm"

# The four profiles: planner arguments per name.
PROFILES: dict[str, list[str]] = {
    "dev-cpu": ["-m", "smollm2-135m-instruct", "--gpu", "cpu", "--gpus-per-node", "1"],
    "deepseek-v3-1x8-h200": ["-m", "deepseek-v3", "--gpu", "h200", "--gpus-per-node", "8"],
    "deepseek-v3-2x8-h100": [
        "-m",
        "deepseek-v3",
        "--gpu",
        "h100",
        "--gpus-per-node",
        "8",
        "--nodes",
        "2",
    ],
    "r1-distill-qwen-7b-1gpu": [
        "-m",
        "deepseek-r1-distill-qwen-7b",
        "--gpu",
        "h100",
        "--gpus-per-node",
        "1",
    ],
}


def helm_sdk() -> ModuleType:
    """The helm_python module, or skip (fail where CI requires Helm)."""
    try:
        import helm_python
    except (ImportError, OSError) as exc:  # OSError: the bundled libhelm_c did not load
        reason = f"helm-python-sdk unavailable ({exc}); `make install` installs it"
        if os.environ.get(REQUIRE_HELM_ENV) == "1":
            pytest.fail(f"{REQUIRE_HELM_ENV}=1 but {reason}")
        pytest.skip(reason)
    return helm_python


def plan_values(profile: str) -> dict[str, Any]:
    """`appliance plan ... --format helm-values` output, exactly as an admin gets it."""
    result = CliRunner().invoke(app, ["plan", *PROFILES[profile], "-f", "helm-values"])
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = yaml.safe_load(result.stdout)
    return data


def base_values() -> dict[str, Any]:
    """What an admin adds to the plan: the Secret, the weights and the database."""
    return {
        "secrets": {"existingSecret": "appliance-secrets"},
        "engine": {"weights": {"existingClaim": "model-store"}},
        "postgresql": {"external": {"host": "db.example.internal", "cidr": "10.20.0.5/32"}},
    }


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@dataclass(frozen=True)
class Rendered:
    """The rendered release: every Kubernetes object plus NOTES.txt."""

    objects: tuple[dict[str, Any], ...]
    notes: str

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name_suffix: str = "") -> dict[str, Any]:
        found = [o for o in self.of_kind(kind) if o["metadata"]["name"].endswith(name_suffix)]
        assert len(found) == 1, f"{kind} *{name_suffix}: {[o['metadata']['name'] for o in found]}"
        return found[0]

    def pod_templates(self) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
        """(owner, pod template) for every workload, LeaderWorkerSet leader and worker too."""
        for obj in self.objects:
            spec = obj.get("spec", {})
            if obj["kind"] in ("Deployment", "StatefulSet"):
                yield obj, spec["template"]
            elif obj["kind"] == "Job":
                yield obj, spec["template"]
            elif obj["kind"] == "CronJob":
                yield obj, spec["jobTemplate"]["spec"]["template"]
            elif obj["kind"] == "Pod":
                yield obj, {"metadata": obj["metadata"], "spec": spec}
            elif obj["kind"] == "LeaderWorkerSet":
                lwt = spec["leaderWorkerTemplate"]
                yield obj, lwt["leaderTemplate"]
                yield obj, lwt["workerTemplate"]


def render(values: dict[str, Any]) -> Rendered:
    helm = helm_sdk()
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema(values)
        manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects: list[dict[str, Any]] = []
    notes = ""
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        objects += [doc for doc in yaml.safe_load_all(text) if doc]
    return Rendered(tuple(objects), notes)
