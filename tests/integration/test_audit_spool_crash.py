"""The spool's guarantees with a real ``appliance serve`` (issue 15):

- SIGKILL at 50 random points under load (plain and streamed chat), restarting each
  time: afterwards `audit verify` is green and every answer a client received whole
  has its request and completion records;
- a full disk answers 503 and never an unrecorded answer, and the gateway serves again
  once the disk has room; a read-only spool keeps the gateway from starting (a write
  failing at run time takes the full disk's path: tests/unit/audit/test_spool_writer.py).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import Engine

from appliance.audit.store import SqlAuditStore
from appliance.audit.verify import verify_log
from appliance.audit.wiring import audit_verifier
from appliance.config import Settings, load_settings
from appliance.db import create_db_engine, upgrade_database
from appliance.gateway.services import utc_now
from appliance.identity.apikeys import ApiKeyService
from appliance.keys.deployment import deployment_secrets
from tests.support.fake_vllm import SECRET
from tests.support.processes import REPO, start_serve
from tests.support.requests import CHAT, auth, chat_body
from tests.support.servers import free_port

KILLS = 50
BOTH = ["inference.request", "inference.completion"]


def _config(
    tmp_path: Path, engine_url: str, spool: Path, workers: int = 1
) -> tuple[Path, Settings, int]:
    port = free_port()
    config = tmp_path / "appliance.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(tmp_path / "data"),
                "database": {"url": f"sqlite:///{tmp_path / 'gateway.db'}"},
                "engine": {"enabled": False, "api_key": SECRET},
                "gateway": {
                    "port": port,
                    # One process, so that SIGKILL takes the whole gateway down.
                    "workers": workers,
                    "upstreams": [{"model": "fake-model", "url": engine_url}],
                },
                "audit": {
                    "checkpoint_interval_s": 0.2,
                    "spool": {"enabled": True, "directory": str(spool), "segment_bytes": 65536},
                },
            }
        )
    )
    return config, load_settings(config), port


def _key(engine: Engine, settings: Settings) -> str:
    service = ApiKeyService(engine, deployment_secrets(settings).api_key_pepper)
    created = service.create(
        name="load", owner="tester", roles=["appliance-user"], models=None, now=utc_now()
    )
    return created.secret


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)


@pytest.fixture
def gateway_setup(
    tmp_path: Path, fake_vllm: tuple[str, object]
) -> Iterator[tuple[Path, Settings, int, str, Engine]]:
    url, _state = fake_vllm
    config, settings, port = _config(tmp_path, url, tmp_path / "spool")
    engine = create_db_engine(settings.database_url)
    upgrade_database(engine)
    yield config, settings, port, _key(engine, settings), engine
    engine.dispose()


def _whole_stream(response: httpx.Response) -> bool:
    return response.text.rstrip().endswith("data: [DONE]")


def _assert_log_whole(engine: Engine, settings: Settings, answered: list[str]) -> None:
    store = SqlAuditStore(engine)
    verify_log(store, audit_verifier(settings), origin=settings.audit.origin)
    missing = [
        request_id
        for request_id in answered
        if [r.event.value for r in store.by_request(request_id)] != BOTH
    ]
    assert not missing, f"{len(missing)} answers without both records, e.g. {missing[:3]}"


@pytest.mark.timeout(900)
def test_fifty_sigkills_under_load_leave_every_answer_recorded(
    tmp_path: Path, gateway_setup: tuple[Path, Settings, int, str, Engine]
) -> None:
    config, settings, port, key, engine = gateway_setup
    log = tmp_path / "gateway.log"
    answered: list[str] = []
    stop = threading.Event()

    def load(stream: bool) -> None:
        body = chat_body(stream=True) if stream else chat_body()
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            while not stop.is_set():
                try:
                    response = client.post(CHAT, json=body, headers=auth(key))
                except httpx.HTTPError:
                    time.sleep(0.01)  # the gateway is down: try again
                    continue
                if response.status_code == 200 and (not stream or _whole_stream(response)):
                    answered.append(response.headers["x-request-id"])

    threads = [threading.Thread(target=load, args=(i % 2 == 1,)) for i in range(4)]
    for thread in threads:
        thread.start()
    chooser = random.Random(int(os.environ.get("APPLIANCE_TEST_SEED", "15")))
    try:
        for _kill in range(KILLS):
            gateway = start_serve(config, port, log)
            time.sleep(chooser.uniform(0.02, 0.5))  # a random point under load
            os.kill(gateway.pid, signal.SIGKILL)
            gateway.wait(timeout=10)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    assert len(answered) >= KILLS  # the load really ran between the kills

    gateway = start_serve(config, port, log)  # replays what the last kill left spooled
    try:
        response = httpx.post(
            f"http://127.0.0.1:{port}{CHAT}", json=chat_body(), headers=auth(key), timeout=10
        )
        assert response.status_code == 200
        answered.append(response.headers["x-request-id"])
    finally:
        _stop(gateway)  # a clean stop drains the spool and signs the tail
    _assert_log_whole(engine, settings, answered)
    assert "Traceback" not in log.read_text(errors="replace")


@pytest.mark.timeout(300)
def test_two_workers_on_sqlite_spool_in_two_slots_and_lose_nothing(
    tmp_path: Path, fake_vllm: tuple[str, object]
) -> None:
    """gateway.workers auto is every core on SQLite once the audit is spooled: each
    worker holds its own slot, and both drainers seal into the one log."""
    url, _state = fake_vllm
    spool = tmp_path / "spool"
    config, settings, port = _config(tmp_path, url, spool, workers=2)
    engine = create_db_engine(settings.database_url)
    upgrade_database(engine)
    key = _key(engine, settings)
    gateway = start_serve(config, port, tmp_path / "gateway.log")
    answered: list[str] = []

    def load() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for _ in range(60):
                response = client.post(CHAT, json=chat_body(), headers=auth(key))
                assert response.status_code == 200, response.text
                answered.append(response.headers["x-request-id"])

    try:
        threads = [threading.Thread(target=load) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        _stop(gateway)
    assert len(answered) == 240
    assert {path.name for path in spool.glob("slot-*") if path.is_dir()} == {"slot-0", "slot-1"}
    _assert_log_whole(engine, settings, answered)
    engine.dispose()


def _mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs as a disk that fills up")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")


@pytest.mark.timeout(300)
def test_a_full_spool_refuses_with_503_and_recovers_and_a_read_only_one_stops_the_start(
    tmp_path: Path, fake_vllm: tuple[str, object]
) -> None:
    url, _state = fake_vllm
    spool = tmp_path / "spool"
    _mount_tmpfs(spool, "2m")
    try:
        config, settings, port = _config(tmp_path, url, spool)
        engine = create_db_engine(settings.database_url)
        upgrade_database(engine)
        key = _key(engine, settings)
        log = tmp_path / "gateway.log"
        gateway = start_serve(config, port, log)
        answered: list[str] = []
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                # A record larger than a page: it cannot fit in the one the spool's
                # file already holds (tmpfs allocates whole pages).
                long_prompt = {"role": "user", "content": "Tokyo " * 2000}

                def ask() -> httpx.Response:
                    body = chat_body(messages=[long_prompt])
                    response = client.post(CHAT, json=body, headers=auth(key))
                    if response.status_code == 200:
                        answered.append(response.headers["x-request-id"])
                    return response

                assert ask().status_code == 200
                metrics = client.get("/metrics").text
                assert "appliance_audit_spool_pending_bytes" in metrics
                assert "appliance_audit_spool_drain_failures 0.0" in metrics
                # Fill the disk: the spool cannot write its next record.
                filler = spool / "filler"
                subprocess.run(
                    ["dd", "if=/dev/zero", f"of={filler}", "bs=64k"],
                    capture_output=True,
                    check=False,
                )
                refused = ask()
                assert refused.status_code == 503
                assert refused.json()["error"]["code"] == "audit_unavailable"
                filler.unlink()
                assert ask().status_code == 200

        finally:
            _stop(gateway)
        _assert_log_whole(engine, settings, answered)
        assert len(answered) == 2

        # A spool the gateway cannot write at all (remounted read-only, as the kernel
        # does after disk errors) keeps it from starting, naming the directory.
        subprocess.run(["mount", "-o", "remount,ro", str(spool)], check=True)
        process = subprocess.run(
            [sys.executable, "-m", "appliance.cli", "serve", "--config", str(config)],
            cwd=REPO, capture_output=True, text=True, timeout=120,
            env={k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")},
        )  # fmt: skip
        assert process.returncode != 0
        assert f"audit spool {spool}" in process.stdout + process.stderr
        engine.dispose()
    finally:
        subprocess.run(["umount", "-l", str(spool)], check=False)
