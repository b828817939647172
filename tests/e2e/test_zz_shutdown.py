"""Runs last among the real-engine tests (files run in name order): Ctrl-C stops the
session's appliance, which every other e2e test shares through the `appliance` fixture."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.e2e.conftest import RunningAppliance

pytestmark = pytest.mark.e2e


def _processes_in_group(pgid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the command name (which may hold spaces) start at ") ".
        fields = stat.rsplit(") ", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def test_ctrl_c_stops_everything(appliance: RunningAppliance) -> None:
    """Runs last in this module: Ctrl-C (SIGINT) stops the gateway and both engines,
    leaving no engine process behind."""
    assert _processes_in_group(appliance.engine_pid)
    assert _processes_in_group(appliance.embed_pid)
    os.kill(appliance.process.pid, signal.SIGINT)
    assert appliance.process.wait(timeout=90) == 0, "\n".join(appliance.output[-30:])
    assert _processes_in_group(appliance.engine_pid) == []
    assert _processes_in_group(appliance.embed_pid) == []  # the embedding engine too
