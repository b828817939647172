"""A dead replica shows, per replica, everywhere (issue 19): in ``/readyz`` (which stays
ready while each model has a healthy replica, the rule in docs/gateway.md), in the
admin engines API, and in the ``appliance_engine_up`` gauge. Against the app in this
process, then against a real ``appliance serve`` with an engine process SIGKILLed."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from appliance.config import Settings, load_settings
from appliance.db import create_db_engine, upgrade_database
from appliance.gateway import create_app
from appliance.gateway.services import utc_now
from appliance.identity.apikeys import ApiKeyService
from appliance.keys.deployment import deployment_secrets
from tests.integration.conftest import GatewayHarness
from tests.support.fake_vllm import SECRET, FakeState, create_fake_vllm
from tests.support.processes import appliance_serve, fake_vllm_process
from tests.support.requests import CHAT, auth, chat_body
from tests.support.servers import ServerThread, free_port

ENGINES = "/ui/api/admin/engines"


class Client(Protocol):
    """What both TestClient and httpx.Client offer."""

    def get(self, url: str, *, headers: dict[str, str] | None = ...) -> Any: ...

    def post(self, url: str, *, json: Any = ..., headers: dict[str, str] | None = ...) -> Any: ...


def engine_up(client: Client) -> dict[str, float]:
    """appliance_engine_up by replica URL, read from /metrics."""
    found = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == "appliance_engine_up" and sample.labels["model"] == "pooled":
                found[sample.labels["replica"]] = sample.value
    return found


def wait_for(condition: Callable[[], bool], timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def assert_one_replica_dead(client: Client, admin: str, live: str, dead: str) -> None:
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text  # the model can still be served
    body = ready.json()
    assert body["status"] == "ready"
    assert body["engines"] == {"pooled": "ok"}  # the per-model view, kept as it was
    assert body["replicas"] == [
        {"model": "pooled", "replica": 0, "healthy": True},
        {"model": "pooled", "replica": 1, "healthy": False},
    ]
    assert live not in ready.text and dead not in ready.text  # no address without a login

    rows = client.get(ENGINES, headers=auth(admin)).json()["data"]
    assert [(r["model"], r["url"], r["healthy"]) for r in rows] == [
        ("pooled", live, True),
        ("pooled", dead, False),
    ]
    assert all(set(r) >= {"outstanding", "consecutive_failures", "circuit_open"} for r in rows)

    assert engine_up(client) == {live: 1.0, dead: 0.0}
    served = client.post(CHAT, json=chat_body("pooled"), headers=auth(admin))
    assert served.status_code == 200


def assert_all_replicas_dead(client: Client, admin: str, urls: list[str]) -> None:
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["engines"] == {"pooled": "unavailable"}
    assert [r["healthy"] for r in ready.json()["replicas"]] == [False, False]
    rows = client.get(ENGINES, headers=auth(admin)).json()["data"]
    assert [(r["url"], r["healthy"]) for r in rows] == [(url, False) for url in urls]
    assert engine_up(client) == dict.fromkeys(urls, 0.0)


@pytest.fixture
def two_replicas() -> Iterator[list[ServerThread]]:
    with ExitStack() as stack:
        yield [stack.enter_context(ServerThread(create_fake_vllm(FakeState()))) for _ in "ab"]


def test_a_dead_replica_shows_in_readyz_admin_api_and_metrics(
    harness: GatewayHarness, two_replicas: list[ServerThread]
) -> None:
    live, dead = two_replicas
    data = harness.settings.model_dump()
    data["gateway"]["upstreams"] = [{"model": "pooled", "url": s.url} for s in two_replicas]
    data["gateway"]["routing"]["health_interval_s"] = 0.05
    admin = harness.key(roles=["appliance-admin", "appliance-user"])
    app = create_app(Settings.model_validate(data), secrets=harness.secrets)
    with TestClient(app) as client:
        # The health loop checks at once: both replicas are up before anyone asks.
        wait_for(lambda: engine_up(client) == {live.url: 1.0, dead.url: 1.0})
        assert client.get("/readyz").json()["replicas"] == [
            {"model": "pooled", "replica": 0, "healthy": True},
            {"model": "pooled", "replica": 1, "healthy": True},
        ]

        dead.__exit__(None, None, None)
        # The health loop alone (no /readyz call) brings the gauge down.
        wait_for(lambda: engine_up(client)[dead.url] == 0.0)
        assert_one_replica_dead(client, admin, live.url, dead.url)

        live.__exit__(None, None, None)
        assert_all_replicas_dead(client, admin, [live.url, dead.url])


def test_a_sigkilled_replica_shows_in_the_real_appliance_serve(tmp_path: Path) -> None:
    """The issue's reproduction: `appliance serve` in front of two engine processes,
    one killed with SIGKILL."""
    ports = [free_port(), free_port()]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    gateway_port = free_port()
    config = tmp_path / "appliance.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(tmp_path / "data"),
                "database": {"url": f"sqlite:///{tmp_path / 'gateway.db'}"},
                "engine": {"enabled": False, "api_key": SECRET},
                "gateway": {
                    "port": gateway_port,
                    "upstreams": [{"model": "pooled", "url": url} for url in urls],
                    "routing": {"health_interval_s": 0.2},
                },
            }
        )
    )
    settings = load_settings(config)
    database = create_db_engine(settings.database_url)
    upgrade_database(database)
    admin = (
        ApiKeyService(database, deployment_secrets(settings).api_key_pepper)
        .create(
            name="ops", owner="ops", roles=["appliance-admin", "appliance-user"], models=None,
            now=utc_now(),
        )
        .secret
    )  # fmt: skip
    database.dispose()
    log = tmp_path / "processes.log"
    with ExitStack() as stack:
        live, dead = (stack.enter_context(fake_vllm_process(port, log)) for port in ports)
        url = stack.enter_context(appliance_serve(config, gateway_port, log))
        with httpx.Client(base_url=url, timeout=10) as client:
            wait_for(lambda: engine_up(client) == dict.fromkeys(urls, 1.0))
            dead.kill()  # SIGKILL: no goodbye, the port simply stops answering
            dead.wait()
            wait_for(lambda: engine_up(client)[urls[1]] == 0.0)
            assert_one_replica_dead(client, admin, urls[0], urls[1])
            live.kill()
            live.wait()
            assert_all_replicas_dead(client, admin, urls)
