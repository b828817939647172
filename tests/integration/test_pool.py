"""Several fake engines behind one model: spread, prefix affinity, failover when a
replica dies mid-traffic, circuit breaking, aliases and policy routes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack

import httpx
import pytest
from fastapi.testclient import TestClient

from appliance.config import Settings
from appliance.gateway import create_app
from tests.support.fake_vllm import FakeState, create_fake_vllm
from tests.support.requests import CHAT, auth, chat_body
from tests.support.servers import ServerThread


@pytest.fixture
def replicas() -> Iterator[list[tuple[ServerThread, FakeState]]]:
    with ExitStack() as stack:
        found = []
        for _ in range(3):
            state = FakeState()
            found.append((stack.enter_context(ServerThread(create_fake_vllm(state))), state))
        yield found


def _settings(harness, replicas, **routing: object) -> Settings:  # type: ignore[no-untyped-def]
    data = harness.settings.model_dump()
    data["gateway"]["upstreams"] += [{"model": "pooled", "url": s.url} for s, _ in replicas]
    data["gateway"]["routing"].update(routing)
    return Settings.model_validate(data)


def _pooled(**extra: object) -> dict[str, object]:
    return chat_body("pooled", **extra)


def test_least_outstanding_spreads_requests(harness, replicas) -> None:
    settings = _settings(harness, replicas, health_interval_s=0)
    with TestClient(create_app(settings, secrets=harness.secrets)) as client:
        for _ in range(12):
            assert (
                client.post(CHAT, json=_pooled(), headers=auth(harness.user_key)).status_code == 200
            )
    counts = [len(state.requests) for _, state in replicas]
    assert counts == [4, 4, 4]
    # The engine got its own served name, not the alias or pool name.
    assert all(r["model"] == "pooled" for _, s in replicas for r in s.requests)


def test_prefix_affinity_keeps_a_system_prompt_on_one_replica(harness, replicas) -> None:
    settings = _settings(harness, replicas, health_interval_s=0, prefix_affinity=True)
    system = {"role": "system", "content": "You answer questions about French geography."}
    with TestClient(create_app(settings, secrets=harness.secrets)) as client:
        for index in range(9):
            body = _pooled(messages=[system, {"role": "user", "content": f"question {index}"}])
            assert client.post(CHAT, json=body, headers=auth(harness.user_key)).status_code == 200
        spread = [len(state.requests) for _, state in replicas]
        for index in range(30):
            body = _pooled(messages=[{"role": "user", "content": f"new conversation {index}"}])
            assert client.post(CHAT, json=body, headers=auth(harness.user_key)).status_code == 200
    assert sorted(spread) == [0, 0, 9]
    # New conversations spread: at least two replicas served more than before them (each
    # compared with its own count; which replica the system prompt maps to depends on
    # the replicas' random ports).
    grew = [
        len(state.requests) > before for (_, state), before in zip(replicas, spread, strict=True)
    ]
    assert sum(grew) >= 2


def test_replica_killed_mid_traffic_loses_no_request(harness, replicas) -> None:
    settings = _settings(harness, replicas, health_interval_s=0, failure_threshold=2)
    app = create_app(settings, secrets=harness.secrets)
    statuses: list[int] = []
    errors: list[BaseException] = []
    with ServerThread(app) as gateway:

        def traffic(n: int) -> None:
            with httpx.Client(base_url=gateway.url, timeout=10) as http:
                for _ in range(n):
                    try:
                        response = http.post(CHAT, json=_pooled(), headers=auth(harness.user_key))
                        statuses.append(response.status_code)
                    except BaseException as exc:
                        errors.append(exc)

        workers = [threading.Thread(target=traffic, args=(25,)) for _ in range(3)]
        for worker in workers:
            worker.start()
        while len(statuses) < 15:
            threading.Event().wait(0.01)
        victim, victim_state = replicas[0]
        victim.__exit__(None, None, None)  # the engine goes away mid-traffic
        served_before = len(victim_state.requests)
        for worker in workers:
            worker.join(timeout=60)
        pool = app.state.services.upstream.pool
        dead = next(r for r in pool.replicas("pooled") if r.url == victim.url)
    assert not errors
    assert statuses == [200] * 75
    assert len(victim_state.requests) == served_before  # nothing reached it afterwards
    assert dead.consecutive_failures >= 2 and dead.open_until_s > 0  # circuit open
    assert all(r.outstanding == 0 for r in pool.replicas())


def test_streaming_failover_before_first_byte(harness, replicas) -> None:
    replicas[0][0].__exit__(None, None, None)
    replicas[1][0].__exit__(None, None, None)
    settings = _settings(harness, replicas, health_interval_s=0)
    with TestClient(create_app(settings, secrets=harness.secrets)) as client:
        for _ in range(3):
            response = client.post(CHAT, json=_pooled(stream=True), headers=auth(harness.user_key))
            assert response.status_code == 200
            assert b"Paris" in response.content
    assert len(replicas[2][1].requests) == 3


def test_health_checks_take_a_dead_replica_out(harness, replicas) -> None:
    settings = _settings(harness, replicas, health_interval_s=0.05)
    app = create_app(settings, secrets=harness.secrets)
    with TestClient(app) as client:
        replicas[1][0].__exit__(None, None, None)
        pool = app.state.services.upstream.pool
        dead = next(r for r in pool.replicas("pooled") if r.url == replicas[1][0].url)
        for _ in range(100):
            if not dead.healthy:
                break
            threading.Event().wait(0.05)
        assert not dead.healthy
        before = len(replicas[1][1].requests)
        for _ in range(6):
            assert (
                client.post(CHAT, json=_pooled(), headers=auth(harness.user_key)).status_code == 200
            )
    assert len(replicas[1][1].requests) == before


def test_alias_and_header_policy_route(harness, replicas) -> None:
    settings = _settings(
        harness,
        replicas,
        health_interval_s=0,
        aliases={"pool-alias": "pooled"},
        policy_routes=[{"model": "pooled", "to": "fake-model", "header": "x-appliance-route=alt"}],
    )
    with TestClient(create_app(settings, secrets=harness.secrets)) as client:
        aliased = client.post(CHAT, json=chat_body("pool-alias"), headers=auth(harness.user_key))
        routed = client.post(
            CHAT,
            json=chat_body("pool-alias"),
            headers={**auth(harness.user_key), "x-appliance-route": "alt"},
        )
    assert aliased.status_code == 200 and aliased.json()["model"] == "pooled"
    assert routed.status_code == 200 and routed.json()["model"] == "fake-model"
    records = harness.records(aliased.headers["x-request-id"])
    assert records[0].model == "pooled"


def test_models_lists_aliases_the_caller_may_use(harness, replicas) -> None:
    settings = _settings(
        harness,
        replicas,
        health_interval_s=0,
        aliases={"pool-alias": "pooled", "fast": "fake-model", "ghost": "not-served"},
        policy_routes=[{"model": "pooled", "to": "fake-model", "header": "x-appliance-route=alt"}],
    )
    only_pooled = harness.key(models=["pooled"])
    with TestClient(create_app(settings, secrets=harness.secrets)) as client:
        everything = client.get("/v1/models", headers=auth(harness.user_key)).json()["data"]
        limited = client.get("/v1/models", headers=auth(only_pooled)).json()["data"]
        rerouted = client.get(
            "/v1/models", headers={**auth(only_pooled), "x-appliance-route": "alt"}
        ).json()["data"]
    aliases = {m["id"]: m["parent"] for m in everything if "parent" in m}
    # An alias of a model nobody serves is not listed.
    assert aliases == {"fast": "fake-model", "pool-alias": "pooled"}
    assert all(m["object"] == "model" for m in everything)
    # A key restricted to "pooled" sees that model and its alias, not "fast".
    assert [(m["id"], m.get("parent")) for m in limited] == [
        ("pooled", None),
        ("pool-alias", "pooled"),
    ]
    # The header routes the alias to fake-model, which that key may not use.
    assert [m["id"] for m in rerouted] == ["pooled"]
