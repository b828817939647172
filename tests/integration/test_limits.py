"""Limits through the gateway: 429 with Retry-After, token settlement, concurrency, and
two gateway processes sharing one Redis."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import anyio
import httpx
import pytest
import redis
from fastapi.testclient import TestClient

from appliance.audit.records import AuditEvent, Outcome
from appliance.config import LimitsSettings, Settings
from appliance.gateway import create_app
from tests.support.requests import CHAT, auth, chat_body
from tests.support.servers import ServerThread, free_port


def _with_limits(settings: Settings, **limits: object) -> Settings:
    return settings.model_copy(update={"limits": LimitsSettings(**limits)})  # type: ignore[arg-type]


def test_requests_per_minute_then_429_with_retry_after(harness) -> None:
    settings = _with_limits(harness.settings, roles={"appliance-user": {"rpm": 3}})
    with TestClient(create_app(settings, secrets=harness.secrets)) as client:
        codes = [
            client.post(CHAT, json=chat_body(), headers=auth(harness.user_key)).status_code
            for _ in range(3)
        ]
        refused = client.post(CHAT, json=chat_body(), headers=auth(harness.user_key))
        # Another principal with the same role has its own quota.
        other = client.post(CHAT, json=chat_body(), headers=auth(harness.key()))
    assert codes == [200, 200, 200]
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 20  # 1 request refills in 20 s
    error = refused.json()["error"]
    assert error["type"] == "rate_limit_error" and error["code"] == "rate_limit_exceeded"
    assert "requests per minute" in error["message"]
    assert other.status_code == 200
    records = harness.records(refused.headers["x-request-id"])
    assert [(r.event, r.outcome) for r in records] == [(AuditEvent.DENIED, Outcome.DENIED)]


def test_tokens_reserved_then_settled_on_real_usage(harness) -> None:
    # Each request reserves 8 (prompt estimate) + 50 tokens; it uses 11 + 7 = 18. Without
    # settlement the second would not fit in 100.
    settings = _with_limits(harness.settings, roles={"appliance-user": {"tpm": 100}})
    body = chat_body(max_tokens=50)
    with TestClient(create_app(settings, secrets=harness.secrets)) as client:
        first = client.post(CHAT, json=body, headers=auth(harness.user_key))
        second = client.post(CHAT, json=body, headers=auth(harness.user_key))
        streamed = client.post(CHAT, json={**body, "stream": True}, headers=auth(harness.user_key))
        # 100 - 3 * 18 = 46 left: a fourth 58-token reservation does not fit.
        fourth = client.post(CHAT, json=body, headers=auth(harness.user_key))
    assert [first.status_code, second.status_code, streamed.status_code] == [200, 200, 200]
    assert fourth.status_code == 429
    assert "tokens per minute" in fourth.json()["error"]["message"]
    assert int(fourth.headers["retry-after"]) >= 1


def test_team_quota_is_shared_by_its_members(harness, tmp_path) -> None:
    settings = _with_limits(harness.settings, teams={"*": {"rpm": 2}})
    # API keys carry no team; an OIDC principal does. Use the limiter directly.
    from appliance.identity.principal import AuthMethod, Principal
    from appliance.limits import build_limiter

    limiter = build_limiter(settings.limits)
    alice = Principal("a", "alice", AuthMethod.OIDC, team="ml")
    bob = Principal("b", "bob", AuthMethod.OIDC, team="ml")
    carol = Principal("c", "carol", AuthMethod.OIDC, team="sales")

    async def run() -> list[bool]:
        results = []
        for who in (alice, bob, alice, carol):
            try:
                await limiter.admit(who, 10)
                results.append(True)
            except Exception:
                results.append(False)
        return results

    import anyio

    assert anyio.run(run) == [True, True, False, True]


def test_concurrency_limit_frees_the_slot_when_the_stream_ends(harness) -> None:
    settings = _with_limits(harness.settings, roles={"appliance-user": {"concurrency": 1}})
    app = create_app(settings, secrets=harness.secrets)
    with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=10) as http:
        headers = auth(harness.user_key)
        with http.stream(
            "POST", CHAT, json=chat_body("fake-slow", stream=True), headers=headers
        ) as slow:
            assert slow.status_code == 200
            chunks = slow.iter_raw()  # kept: a dropped iterator closes the response
            next(chunks)
            busy = http.post(CHAT, json=chat_body(), headers=headers)
        assert busy.status_code == 429
        assert busy.json()["error"]["code"] == "concurrency_limit_exceeded"
        assert busy.headers["retry-after"] == "1"
        deadline = time.monotonic() + 5
        while True:  # the slot is freed once the gateway notices the client left
            again = http.post(CHAT, json=chat_body(), headers=headers)
            if again.status_code == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert again.status_code == 200


@pytest.mark.parametrize("spec_version", ["2.3", "2.4"])
def test_a_client_gone_before_the_first_byte_frees_its_concurrency_slot(
    harness, spec_version: str
) -> None:
    """The streaming body never starts: the client left while the response start was
    being sent (2.3: the disconnect listener cancels the sender; 2.4: the send fails).
    The lease must be settled all the same, or the slot stays taken until its TTL."""
    settings = _with_limits(harness.settings, roles={"appliance-user": {"concurrency": 1}})
    app = create_app(settings, secrets=harness.secrets)
    body = json.dumps(chat_body("fake-slow", stream=True)).encode()
    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": spec_version},
        "http_version": "1.1", "method": "POST", "scheme": "http", "path": CHAT,
        "raw_path": CHAT.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"authorization", f"Bearer {harness.user_key}".encode())],
        "client": ("127.0.0.1", 50000), "server": ("testserver", 80),
    }  # fmt: skip
    sent: list[dict[str, object]] = []

    async def gone_before_the_first_byte() -> None:
        request = [{"type": "http.request", "body": body, "more_body": False}]
        starting = anyio.Event()

        async def receive() -> dict[str, object]:
            if request:
                return request.pop()
            await starting.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, object]) -> None:
            sent.append(message)
            if message["type"] == "http.response.start":
                starting.set()
                if spec_version == "2.4":
                    raise OSError("the client is gone")
                await anyio.sleep_forever()  # cancelled by the disconnect listener

        with contextlib.suppress(Exception):
            await app(scope, receive, send)

    with TestClient(app) as client:
        assert client.portal is not None
        client.portal.call(gone_before_the_first_byte)
        # No body byte went out: the generator never ran.
        assert [m["type"] for m in sent] == ["http.response.start"]
        again = client.post(CHAT, json=chat_body(), headers=auth(harness.user_key))
    assert again.status_code == 200, again.text
    request_id = dict(sent[0]["headers"])[b"x-request-id"].decode()  # type: ignore[call-overload]
    records = harness.records(request_id)
    assert [(r.event, r.outcome) for r in records] == [
        (AuditEvent.REQUEST, Outcome.ACCEPTED),
        (AuditEvent.COMPLETION, Outcome.CLIENT_DISCONNECTED),
    ]


def test_a_client_sent_priority_never_reaches_the_engine(harness) -> None:
    headers = auth(harness.user_key)
    with TestClient(create_app(harness.settings, secrets=harness.secrets)) as client:
        plain = client.post(CHAT, json=chat_body(priority=-100), headers=headers)
    assert plain.status_code == 200
    assert "priority" not in harness.fake.requests[-1]
    settings = _with_limits(harness.settings, priority={"appliance-user": 5})
    with TestClient(create_app(settings, secrets=harness.secrets)) as client:
        ranked = client.post(CHAT, json=chat_body(priority=-100, stream=True), headers=headers)
    assert ranked.status_code == 200
    assert harness.fake.requests[-1]["priority"] == 5  # the role's, not the client's


def test_two_gateway_processes_share_one_quota_in_redis(
    harness, tmp_path: Path, redis_url: str
) -> None:
    prefix = f"test-limits-{uuid.uuid4().hex}"
    settings = _with_limits(
        harness.settings,
        store="redis",
        redis_url=redis_url,
        key_prefix=prefix,
        roles={"appliance-user": {"rpm": 6}},
    )
    config = tmp_path / "gateway.json"
    config.write_text(json.dumps(settings.model_dump(mode="json") | {
        "limits": {**settings.limits.model_dump(mode="json"), "redis_url": redis_url},
    }))  # fmt: skip
    ports = [free_port(), free_port()]
    repo = Path(__file__).resolve().parents[2]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.support.gateway_process", str(config), str(port)],
            cwd=repo,
        )
        for port in ports
    ]
    try:
        for port in ports:
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
        codes = []
        for index in range(10):
            port = ports[index % 2]
            response = httpx.post(
                f"http://127.0.0.1:{port}{CHAT}",
                json=chat_body(),
                headers=auth(harness.user_key),
                timeout=10,
            )
            codes.append(response.status_code)
        # One bucket of 6 for both replicas (refill over the test is well under 1).
        assert codes.count(200) == 6, codes
        assert codes.count(429) == 4, codes
        assert codes[:6] == [200] * 6
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=10)
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        assert keys  # the replicas really used Redis
        client.delete(*keys)
