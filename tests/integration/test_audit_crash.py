"""Kill the gateway (SIGKILL) under load, start it again: `audit verify` is green and
every request that got a 2xx has its request and completion records."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from appliance.audit.store import SqlAuditStore
from appliance.audit.verify import verify_log
from appliance.audit.wiring import audit_verifier
from appliance.config import load_settings
from appliance.db import create_db_engine, upgrade_database
from tests.support.fake_vllm import SECRET
from tests.support.processes import start_serve
from tests.support.requests import CHAT, auth, chat_body
from tests.support.servers import free_port


@pytest.mark.timeout(180)
def test_sigkill_under_load_then_restart_keeps_the_log_whole(
    tmp_path: Path, fake_vllm: tuple[str, object], harness_key_factory
) -> None:
    url, _state = fake_vllm
    port = free_port()
    config = tmp_path / "appliance.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(tmp_path / "data"),
                "database": {"url": f"sqlite:///{tmp_path / 'gateway.db'}"},
                "engine": {"enabled": False, "api_key": SECRET},
                "gateway": {"port": port, "upstreams": [{"model": "fake-model", "url": url}]},
                "audit": {"checkpoint_interval_s": 0.2},
            }
        )
    )
    settings = load_settings(config)
    engine = create_db_engine(settings.database_url)
    upgrade_database(engine)
    key = harness_key_factory(engine, settings)
    log = tmp_path / "gateway.log"

    gateway = start_serve(config, port, log)
    ok: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            while not stop.is_set():
                try:
                    r = client.post(CHAT, json=chat_body(), headers=auth(key))
                except httpx.HTTPError:
                    continue
                if r.status_code == 200:
                    ok.append(r.headers["x-request-id"])

    workers = [threading.Thread(target=load) for _ in range(6)]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + 30
    while len(ok) < 40 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(gateway.pid, signal.SIGKILL)  # mid-load, no shutdown hook runs
    gateway.wait(timeout=10)
    stop.set()
    for worker in workers:
        worker.join(timeout=10)
    assert len(ok) >= 40

    gateway = start_serve(config, port, log)  # reopens the log after the crash
    try:
        r = httpx.post(f"http://127.0.0.1:{port}{CHAT}", json=chat_body(), headers=auth(key))
        assert r.status_code == 200
        ok.append(r.headers["x-request-id"])
    finally:
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(timeout=30)

    store = SqlAuditStore(engine)
    report = verify_log(store, audit_verifier(settings), origin=settings.audit.origin)
    assert report.uncovered == 0  # the clean stop signed the tail
    for request_id in ok:
        events = [r.event.value for r in store.by_request(request_id)]
        assert events == ["inference.request", "inference.completion"], request_id
    engine.dispose()


@pytest.fixture
def harness_key_factory():  # type: ignore[no-untyped-def]
    from appliance.identity.apikeys import ApiKeyService
    from appliance.keys.deployment import deployment_secrets

    def make(engine, settings) -> str:  # type: ignore[no-untyped-def]
        from appliance.gateway.services import utc_now

        service = ApiKeyService(engine, deployment_secrets(settings).api_key_pepper)
        created = service.create(
            name="load", owner="tester", roles=["appliance-user"], models=None, now=utc_now()
        )
        return created.secret

    return make
