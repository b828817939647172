"""Replica choice: least outstanding, prefix affinity, circuit breaking; routing."""

from __future__ import annotations

from appliance.config import PolicyRoute
from appliance.gateway.pool import ReplicaPool, ReplicaState, rendezvous_order
from appliance.gateway.routing import affinity_key, resolve_model

URLS = ["http://a", "http://b", "http://c"]


def test_least_outstanding_first() -> None:
    pool = ReplicaPool({"m": URLS})
    a, b, c = pool.replicas("m")
    pool.started(a)
    pool.started(a)
    pool.started(b)
    assert [r.url for r in pool.order("m", now_s=0)] == ["http://c", "http://b", "http://a"]
    pool.finished(a)
    pool.finished(a)
    # Ties go to the replica that served fewest so far.
    assert pool.order("m", now_s=0)[0] in (a, c)


def test_affinity_is_stable_until_imbalance() -> None:
    pool = ReplicaPool({"m": URLS}, affinity_max_imbalance=2)
    first = pool.order("m", now_s=0, affinity_key="k")[0]
    assert all(pool.order("m", now_s=0, affinity_key="k")[0] is first for _ in range(5))
    for _ in range(3):
        pool.started(first)
    assert pool.order("m", now_s=0, affinity_key="k")[0] is not first
    # Keys spread over replicas.
    chosen = {pool.order("m", now_s=0, affinity_key=f"k{i}")[0].url for i in range(50)}
    assert len(chosen) >= 2


def test_rendezvous_moves_only_the_removed_replicas_keys() -> None:
    keys = [f"k{i}" for i in range(200)]
    before = {k: rendezvous_order(k, URLS)[0] for k in keys}
    after = {k: rendezvous_order(k, URLS[:2])[0] for k in keys}
    assert all(after[k] == before[k] for k in keys if before[k] != "http://c")


def test_circuit_opens_after_threshold_and_recovers() -> None:
    pool = ReplicaPool({"m": URLS[:2]}, failure_threshold=2, circuit_open_s=10)
    a, b = pool.replicas("m")
    pool.failed(a, now_s=0)
    assert a.available(0)
    pool.failed(a, now_s=0)
    assert not a.available(5)
    assert pool.order("m", now_s=5) == [b, a]  # the open one only as a last resort
    assert a.available(10)
    pool.succeeded(a)
    assert a.consecutive_failures == 0


def test_health_check_failure_takes_replica_out() -> None:
    pool = ReplicaPool({"m": URLS[:2]})
    a, b = pool.replicas("m")
    pool.checked(a, False, now_s=0)
    assert pool.order("m", now_s=0)[0] is b
    pool.checked(a, True, now_s=1)
    assert a.available(1)


def test_aliases_and_policy_routes() -> None:
    routes = [
        PolicyRoute(model="deepseek-v3", to="r1-distill", header="x-appliance-route=r1"),
        PolicyRoute(model="deepseek-v3", to="deepseek-v3-priority", role="vip"),
    ]
    aliases = {"deepseek": "deepseek-v3"}

    def resolve(model: str, roles: set[str], headers: dict[str, str]) -> str:
        return resolve_model(
            model, roles=frozenset(roles), headers=headers, aliases=aliases, routes=routes
        )

    assert resolve("deepseek", set(), {}) == "deepseek-v3"
    assert resolve("deepseek", set(), {"x-appliance-route": "r1"}) == "r1-distill"
    assert resolve("deepseek-v3", {"vip"}, {}) == "deepseek-v3-priority"
    assert resolve("other", {"vip"}, {"x-appliance-route": "r1"}) == "other"


def test_affinity_key_follows_system_prompt_or_conversation_start() -> None:
    system = {"role": "system", "content": "You are a lawyer."}
    one = affinity_key({"messages": [system, {"role": "user", "content": "a"}]})
    two = affinity_key({"messages": [system, {"role": "user", "content": "b"}]})
    assert one == two
    start = {"role": "user", "content": "hello"}
    turn1 = affinity_key({"messages": [start]})
    turn2 = affinity_key({"messages": [start, {"role": "assistant", "content": "hi"},
                                       {"role": "user", "content": "more"}]})  # fmt: skip
    assert turn1 == turn2 != one
    assert affinity_key({"prompt": "abc"}) != affinity_key({"prompt": "abd"})
    assert affinity_key({}) is None


def test_state_is_a_copy_at_a_moment() -> None:
    pool = ReplicaPool({"m": URLS}, failure_threshold=2, circuit_open_s=10)
    a = pool.replicas("m")[0]
    pool.started(a)
    pool.failed(a, now_s=100)
    pool.failed(a, now_s=100)
    pool.checked(a, False, now_s=100)
    state = a.state(now_s=105)
    assert state == ReplicaState(
        model="m", url="http://a", healthy=False, outstanding=1,
        consecutive_failures=2, circuit_open=True,
    )  # fmt: skip
    assert not a.state(now_s=110).circuit_open  # the circuit closes after circuit_open_s
    pool.finished(a)
    assert state.outstanding == 1  # a report never changes under its reader
