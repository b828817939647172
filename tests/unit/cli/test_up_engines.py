"""appliance/cli/up.py: which engines `appliance up` starts, in which order, and that
whatever started is handed back for stopping even when a later start fails."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import pytest

from appliance.cli import up as up_module
from appliance.cli.embedding_engine import BackgroundStart
from appliance.config import Settings
from appliance.errors import EngineStartError
from appliance.keys.deployment import DeploymentSecrets

SECRETS = DeploymentSecrets(engine_api_key="k", api_key_pepper="p" * 32)


@dataclass
class Recorder:
    events: list[str] = field(default_factory=list)
    fail_chat: bool = False


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    rec = Recorder()

    def start_engine(settings: Settings, secrets: Any) -> str:
        rec.events.append("chat started")
        if rec.fail_chat:
            raise EngineStartError("chat failed")
        return "chat"

    def embedding_supervisor(settings: Settings, secrets: Any) -> str:
        rec.events.append("embedding prepared")
        return "embedding"

    class Background:
        def __init__(self, supervisor: str):
            rec.events.append(f"{supervisor} starting in background")

        def wait(self) -> None:
            rec.events.append("embedding waited for")

    monkeypatch.setattr(up_module, "start_engine", start_engine)
    monkeypatch.setattr(up_module, "embedding_supervisor", embedding_supervisor)
    monkeypatch.setattr(up_module, "start_in_background", Background)
    return rec


def run(settings: Settings) -> list[Any]:
    supervisors: list[Any] = []
    up_module._start_engines(settings, SECRETS, supervisors)
    return supervisors


def test_cpu_engines_warm_up_together(recorder: Recorder) -> None:
    assert run(Settings()) == ["embedding", "chat"]
    assert recorder.events == [
        "embedding prepared", "embedding starting in background", "chat started",
        "embedding waited for",
    ]  # fmt: skip


def test_a_gpu_embedding_engine_starts_after_the_chat_engine(recorder: Recorder) -> None:
    settings = Settings(embedding_engine={"device": "gpu"})
    assert run(settings) == ["chat", "embedding"]
    assert recorder.events[0] == "chat started"


def test_off_switch_and_chat_off(recorder: Recorder) -> None:
    assert run(Settings(embedding_engine={"enabled": False})) == ["chat"]
    assert run(Settings(engine={"enabled": False}, embedding_engine={"enabled": True})) == [
        "embedding"
    ]
    assert run(Settings(engine={"enabled": False})) == []


def test_a_failed_chat_start_leaves_the_embedding_engine_to_stop(recorder: Recorder) -> None:
    recorder.fail_chat = True
    supervisors: list[Any] = []
    with pytest.raises(EngineStartError):
        up_module._start_engines(Settings(), SECRETS, supervisors)
    assert supervisors == ["embedding"]  # up() stops it in its finally


class FakeSupervisor:
    def __init__(self, error: Exception | None = None):
        self.error = error
        self.started_on: threading.Thread | None = None
        self.spec = type("Spec", (), {"url": "http://127.0.0.1:1"})()
        self.pid = 1

    def start(self) -> None:
        self.started_on = threading.current_thread()
        if self.error is not None:
            raise self.error


def test_background_start_keeps_the_engines_parent_thread_alive() -> None:
    # PR_SET_PDEATHSIG fires when the forking thread exits: it must outlive the engine.
    supervisor = FakeSupervisor()
    background = BackgroundStart(supervisor)  # type: ignore[arg-type]
    assert background.wait() is supervisor
    assert supervisor.started_on is not None and supervisor.started_on.is_alive()
    assert supervisor.started_on is not threading.current_thread()


def test_background_start_hands_the_error_to_the_main_thread() -> None:
    background = BackgroundStart(FakeSupervisor(EngineStartError("no")))  # type: ignore[arg-type]
    with pytest.raises(EngineStartError, match="no"):
        background.wait()
