"""``appliance serve`` with ``gateway.workers: 2`` on PostgreSQL and Redis limits:
what one worker learns, the other knows. Each client connection is pinned to the worker
process that accepted it (found through the process table), so every check is made on
both workers: requests are audited by both into one verifiable log, a token quota is
spent once across them, a key revoked through one worker's admin API is refused by the
other on the next request, and a browser session made on one works on the other."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
import redis
import yaml

from appliance.audit.store import SqlAuditStore
from appliance.config import load_settings
from appliance.db import create_db_engine, upgrade_database
from appliance.gateway.services import utc_now
from appliance.identity.apikeys import ApiKeyService
from appliance.keys.deployment import deployment_secrets
from tests.support.fake_vllm import SECRET
from tests.support.processes import appliance_serve
from tests.support.requests import CHAT, auth, chat_body
from tests.support.servers import free_port

REPO = Path(__file__).resolve().parents[2]
KEYS = "/admin/api-keys"


@dataclass
class Workers:
    url: str
    config: Path
    keys: ApiKeyService
    store: SqlAuditStore
    admin: str
    port: int
    serve_pid: int


@pytest.fixture
def workers(
    tmp_path: Path, postgres_url: str, redis_url: str, fake_vllm: tuple[str, object]
) -> Iterator[Workers]:
    upstream, _state = fake_vllm
    port, prefix = free_port(), f"test-workers-{uuid.uuid4().hex}"
    config = tmp_path / "appliance.yaml"
    config.write_text(yaml.safe_dump({
        "data_dir": str(tmp_path / "data"),
        "database": {"url": postgres_url},
        "engine": {"enabled": False, "api_key": SECRET},
        "gateway": {"port": port, "workers": 2,
                    "upstreams": [{"model": "fake-model", "url": upstream}]},
        "limits": {"store": "redis", "redis_url": redis_url, "key_prefix": prefix,
                   "teams": {"quota": {"tpm": 100}}},
        "audit": {"checkpoint_interval_s": 0.5},
    }))  # fmt: skip
    settings = load_settings(config)
    engine = create_db_engine(settings.database_url)
    upgrade_database(engine)
    keys = ApiKeyService(engine, deployment_secrets(settings).api_key_pepper)
    admin = keys.create(
        name="admin", owner="root", roles=["appliance-admin", "appliance-user"], models=None,
        now=utc_now(),
    ).secret  # fmt: skip
    log = tmp_path / "gateway.log"
    try:
        with appliance_serve(config, port, log) as url:
            serve = next(p for p in psutil.process_iter(["cmdline"]) if _serves(p, config))
            yield Workers(url, config, keys, SqlAuditStore(engine), admin, port, serve.pid)
    finally:
        engine.dispose()
        client = redis.Redis.from_url(redis_url)
        for key in client.scan_iter(match=f"{prefix}:*"):
            client.delete(key)
    assert "gateway.workers: 2" in log.read_text(errors="replace")


def _serves(process: psutil.Process, config: Path) -> bool:
    cmdline = process.info["cmdline"] or []
    return "serve" in cmdline and str(config) in cmdline


def _connections_to(port: int) -> set[int]:
    """Local ports of this test process's TCP connections to the gateway."""
    return {
        c.laddr.port
        for c in psutil.Process().net_connections(kind="tcp")
        if c.raddr and c.raddr.port == port
    }


def _worker_of(client: httpx.Client, workers: Workers) -> int:
    """The pid of the worker process holding this client's kept-alive connection."""
    before = _connections_to(workers.port)
    assert client.get("/healthz").status_code == 200
    (mine,) = _connections_to(workers.port) - before
    for child in psutil.Process(workers.serve_pid).children():
        for c in child.net_connections(kind="tcp"):
            if c.raddr and c.raddr.port == mine and c.laddr.port == workers.port:
                return int(child.pid)
    raise AssertionError("no worker holds this connection")


@pytest.fixture
def pinned(workers: Workers) -> Iterator[list[httpx.Client]]:
    """One kept-alive client per worker process (new connections until both answered)."""
    found: dict[int, httpx.Client] = {}
    spare: list[httpx.Client] = []
    for _ in range(60):
        client = httpx.Client(base_url=workers.url, timeout=10)
        pid = _worker_of(client, workers)
        if pid in found:
            spare.append(client)
        else:
            found[pid] = client
        if len(found) == 2:
            break
    assert len(found) == 2, "the kernel sent every connection to one worker"
    yield list(found.values())
    for client in [*found.values(), *spare]:
        client.close()


def test_two_workers_share_audit_limits_revocations_and_sessions(
    workers: Workers, pinned: list[httpx.Client]
) -> None:
    one, two = pinned
    # Audit: a request on each worker has both of its records, in one verifiable log.
    user = workers.keys.create(
        name="u", owner="alice", roles=["appliance-user"], models=None, now=utc_now()
    ).secret
    for client in (one, two):
        answer = client.post(CHAT, json=chat_body(), headers=auth(user))
        assert answer.status_code == 200, answer.text
        events = [r.event.value for r in workers.store.by_request(answer.headers["x-request-id"])]
        assert len(events) == 2, events

    # Limits: one team quota for both workers. Each request reserves 8 + 50 tokens and
    # uses 18 (tests/integration/test_limits.py): three fit in 100, the fourth does
    # not; with a quota per worker the first refusal would come at the seventh.
    quota = workers.keys.create(
        name="q", owner="bob", roles=["appliance-user"], models=None, now=utc_now(),
        team="quota",
    ).secret  # fmt: skip
    codes = [
        (two if index % 2 else one)
        .post(CHAT, json=chat_body(max_tokens=50), headers=auth(quota))
        .status_code
        for index in range(4)
    ]
    assert codes == [200, 200, 200, 429], codes

    # Revocation: both workers cache the key; one revokes it; both refuse at once.
    created = one.post(KEYS, json={"name": "r", "owner": "carol"}, headers=auth(workers.admin))
    key_id, secret = created.json()["key_id"], created.json()["api_key"]
    for client in (one, two):
        assert client.post(CHAT, json=chat_body(), headers=auth(secret)).status_code == 200
    revoked = one.delete(f"{KEYS}/{key_id}", headers=auth(workers.admin))
    assert revoked.status_code == 200, revoked.text
    for client in (two, one, two, one):
        assert client.post(CHAT, json=chat_body(), headers=auth(secret)).status_code == 401

    # Sessions: signed in through one worker, the cookie works on the other.
    form = one.get("/ui/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token, form.text[:300]
    signed_in = one.post(
        "/ui/login",
        data={"csrf_token": token.group(1), "api_key": user, "next": "/ui/chat"},
        follow_redirects=False,
    )
    assert signed_in.status_code == 303, signed_in.text
    two.cookies = one.cookies
    assert two.get("/ui/chat", follow_redirects=False).status_code == 200

    # The log the two workers wrote side by side verifies (checkpoints from both).
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    verify = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "audit", "verify", "--skip-witnesses",
         "--config", str(workers.config)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr
