"""One caller's bad input never hurts another (issue 19), against the real
``appliance serve`` process with Redis token quotas, on SQLite and PostgreSQL.

Each finding of the issue is a regression test here: a lone surrogate, JSON nested
5,000 deep, a 400-digit ``max_tokens`` from a token-limited key. Then 40 innocent
requests from 4 keys run beside a stream of such poisoned ones: every innocent one
gets 200 with both of its audit records, and ``appliance audit verify`` is green.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import yaml
from sqlalchemy import create_engine, text

from appliance.audit.store import SqlAuditStore
from appliance.config import load_settings
from appliance.db import create_db_engine, upgrade_database
from appliance.gateway.services import utc_now
from appliance.identity.apikeys import ApiKeyService
from appliance.keys.deployment import deployment_secrets
from tests.support.fake_vllm import SECRET
from tests.support.processes import appliance_serve
from tests.support.redis import require_redis
from tests.support.requests import CHAT, auth
from tests.support.servers import free_port

MODEL = "fake-model"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def _raw(body: str) -> bytes:
    return body.encode()


# One body per exception class the issue saw escape (or fail a batch); each must be a
# 4xx for its own caller and nothing for anyone else.
POISONED: dict[str, bytes] = {
    "UnicodeEncodeError (lone surrogate)": _raw(
        '{"model":"fake-model","messages":[{"role":"user","content":"x \\ud800 y"}]}'
    ),
    "RecursionError (5,000 levels)": _raw(
        '{"model":"fake-model","messages":[{"role":"user","content":"hi"}],"x":'
        + "[" * 5000
        + "]" * 5000
        + "}"
    ),
    "OverflowError (400-digit max_tokens)": _raw(
        '{"model":"fake-model","messages":[{"role":"user","content":"hi"}],'
        '"max_tokens":1' + "0" * 400 + "}"
    ),
    "int64 overflow (max_tokens 2^63)": _raw(
        '{"model":"fake-model","messages":[{"role":"user","content":"hi"}],'
        f'"max_tokens":{2**63}}}'
    ),
    "ValueError (NaN)": _raw(
        '{"model":"fake-model","messages":[{"role":"user","content":"hi"}],"temperature":NaN}'
    ),
    "NUL in the model name": _raw(
        '{"model":"fake\\u0000model","messages":[{"role":"user","content":"hi"}]}'
    ),
    "surrogate in a key": _raw(
        '{"model":"fake-model","messages":[{"role":"user","content":"hi","\\udc00":1}]}'
    ),
}


@dataclass
class Served:
    url: str
    config: Path
    keys: list[str]
    store: SqlAuditStore
    log: Path


def _postgres_schema_url(server_url: str) -> Iterator[str]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in server_url else "?"
    try:
        yield f"{server_url}{separator}options={quote(f'-csearch_path={schema}')}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def served(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    fake_vllm: tuple[str, object],
) -> Iterator[Served]:
    upstream, _state = fake_vllm
    tmp = tmp_path_factory.mktemp(f"isolation-{request.param}")
    if request.param == "sqlite":
        urls: Iterator[str] = iter([f"sqlite:///{tmp / 'gateway.db'}"])
    else:
        urls = _postgres_schema_url(request.getfixturevalue("postgres_server_url"))
    database_url = next(urls)
    port = free_port()
    config = tmp / "appliance.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(tmp / "data"),
                "database": {"url": database_url},
                "engine": {"enabled": False, "api_key": SECRET},
                "gateway": {"port": port, "upstreams": [{"model": MODEL, "url": upstream}]},
                "audit": {"checkpoint_interval_s": 0.5},
                # Token-limited keys in Redis: the 400-digit max_tokens reached the quota
                # arithmetic (OverflowError) before the parser limits.
                "limits": {
                    "store": "redis",
                    "redis_url": require_redis(),
                    "roles": {"appliance-user": {"tpm": 100_000_000}},
                },
            }
        )
    )
    settings = load_settings(config)
    engine = create_db_engine(settings.database_url)
    upgrade_database(engine)
    service = ApiKeyService(engine, deployment_secrets(settings).api_key_pepper)
    keys = [
        service.create(
            name=f"k{i}", owner=f"user{i}", roles=["appliance-user"], models=None, now=utc_now()
        ).secret
        for i in range(5)
    ]
    log = tmp / "gateway.log"
    try:
        with appliance_serve(config, port, log) as url:
            yield Served(url, config, keys, SqlAuditStore(engine), log)
    finally:
        engine.dispose()
        for _rest in urls:  # drops the PostgreSQL schema
            pass


def _post_raw(client: httpx.Client, key: str, body: bytes) -> httpx.Response:
    headers = {**auth(key), "Content-Type": "application/json"}
    return client.post(CHAT, content=body, headers=headers)


@pytest.mark.parametrize("name", list(POISONED))
def test_each_poisoned_body_is_a_4xx_naming_the_problem(served: Served, name: str) -> None:
    with httpx.Client(base_url=served.url, timeout=30) as client:
        response = _post_raw(client, served.keys[4], POISONED[name])
    assert 400 <= response.status_code < 500, (name, response.status_code, response.text)
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    assert "Traceback" not in response.text
    records = served.store.by_request(response.headers["x-request-id"])
    assert [r.event.value for r in records] == ["request.denied"], name


def test_innocent_requests_beside_poisoned_ones_all_succeed_with_both_records(
    served: Served, wait_until
) -> None:
    stop = threading.Event()
    poisoned_statuses: list[int] = []

    def poison() -> None:
        with httpx.Client(base_url=served.url, timeout=30) as client:
            while not stop.is_set():
                for body in POISONED.values():
                    poisoned_statuses.append(_post_raw(client, served.keys[4], body).status_code)

    def innocent(i: int) -> tuple[int, str]:
        body = {"model": MODEL, "messages": QUESTION, "stream": i % 2 == 0}
        with httpx.Client(base_url=served.url, timeout=30) as client:
            response = client.post(CHAT, json=body, headers=auth(served.keys[i % 4]))
            return response.status_code, response.headers.get("x-request-id", "")

    poisoners = [threading.Thread(target=poison) for _ in range(2)]
    for thread in poisoners:
        thread.start()
    try:
        with ThreadPoolExecutor(max_workers=40) as pool:
            results = list(pool.map(innocent, range(40)))
    finally:
        stop.set()
        for thread in poisoners:
            thread.join()

    assert [status for status, _ in results] == [200] * 40
    assert poisoned_statuses and all(400 <= s < 500 for s in poisoned_statuses)
    both = ["inference.request", "inference.completion"]
    for _status, request_id in results:
        # A stream's completion record follows its last byte by a moment.
        assert wait_until(
            lambda rid=request_id: [r.event.value for r in served.store.by_request(rid)] == both
        ), request_id
    verify = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "audit", "verify", "--config", str(served.config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "audit batch" not in served.log.read_text(errors="replace")


def test_the_gateway_log_holds_no_traceback(served: Served) -> None:
    text = served.log.read_text(errors="replace")
    assert "RecursionError" not in text and "OverflowError" not in text
    assert json.dumps("Traceback") not in text
