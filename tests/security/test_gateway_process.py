"""A real gateway process under an audit hook: every connect it attempts during a run
of ordinary, streamed, failing and refused requests targets loopback only; its log
carries no secret; raw HTTP smuggling and oversized headers are refused.

The hook (``sys.addaudithook`` on ``socket.connect``, tests.support.processes
``HOOKED_SERVE``) is installed before the gateway imports anything, so a connection made
by any library (telemetry, a model hub, a DNS lookup) is recorded."""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from appliance.config import load_settings
from appliance.db import create_db_engine, upgrade_database
from appliance.gateway.services import utc_now
from appliance.identity.apikeys import ApiKeyService
from appliance.keys.deployment import deployment_secrets
from tests.support.fake_vllm import SECRET
from tests.support.processes import appliance_serve
from tests.support.requests import CHAT, auth, chat_body
from tests.support.servers import free_port


@dataclass
class GatewayRun:
    url: str
    port: int
    key: str
    secrets: list[str]
    log: Path
    connects: Path


@pytest.fixture(scope="module")
def gateway_run(
    tmp_path_factory: pytest.TempPathFactory, fake_vllm: tuple[str, object]
) -> Iterator[GatewayRun]:
    upstream, _state = fake_vllm
    tmp = tmp_path_factory.mktemp("security")
    port = free_port()
    config = tmp / "appliance.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(tmp / "data"),
                "database": {"url": f"sqlite:///{tmp / 'gateway.db'}"},
                "engine": {"enabled": False, "api_key": SECRET},
                "gateway": {
                    "port": port,
                    "upstreams": [
                        {"model": "fake-model", "url": upstream},
                        {"model": "fake-500", "url": upstream},
                        {"model": "fake-die", "url": upstream},
                    ],
                },
            }
        )
    )
    settings = load_settings(config)
    engine = create_db_engine(settings.database_url)
    upgrade_database(engine)
    pepper = deployment_secrets(settings).api_key_pepper
    key = (
        ApiKeyService(engine, pepper)
        .create(name="sec", owner="tester", roles=["appliance-user"], models=None, now=utc_now())
        .secret
    )
    engine.dispose()
    log, connects = tmp / "gateway.log", tmp / "connects.jsonl"
    with appliance_serve(config, port, log, connects=connects) as url:
        run = GatewayRun(url, port, key, [key, pepper, SECRET], log, connects)
        _traffic(run)
        yield run


def _traffic(run: GatewayRun) -> None:
    with httpx.Client(base_url=run.url, timeout=10) as client:
        good = auth(run.key)
        assert client.post(CHAT, json=chat_body(), headers=good).status_code == 200
        with client.stream("POST", CHAT, json=chat_body(stream=True), headers=good) as r:
            assert r.status_code == 200
            r.read()
        with client.stream(
            "POST", CHAT, json=chat_body("fake-die", stream=True), headers=good
        ) as r:
            r.read()
        assert client.post(CHAT, json=chat_body("fake-500"), headers=good).status_code == 502
        assert client.post(CHAT, json=chat_body(), headers=auth("sk-wrong")).status_code == 401
        assert client.get("/v1/models", headers=good).status_code == 200
        assert client.get("/readyz").status_code in (200, 503)


def test_every_connect_targets_loopback(gateway_run: GatewayRun) -> None:
    lines = [json.loads(line) for line in gateway_run.connects.read_text().splitlines()]
    connects = [entry for entry in lines if "host" in entry]
    assert connects, "the hook saw no connect at all: it is not installed"
    for entry in connects:
        if entry["family"] == socket.AF_UNIX:
            continue
        assert ipaddress.ip_address(entry["host"]).is_loopback, entry
    for entry in lines:
        if "getaddrinfo" in entry:
            name = entry["getaddrinfo"]
            assert name in (None, "localhost") or ipaddress.ip_address(name).is_loopback, entry


def test_no_secret_reaches_the_log(gateway_run: GatewayRun) -> None:
    text = gateway_run.log.read_text(errors="replace")
    assert "POST /v1/chat/completions" in text or "gateway on" in text  # the log is captured
    for secret in gateway_run.secrets:
        assert secret and secret not in text
        assert secret[-12:] not in text  # not even a tail of it


def _raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
    return b"".join(chunks)


def test_content_length_with_transfer_encoding_is_refused(gateway_run: GatewayRun) -> None:
    body = json.dumps(chat_body()).encode()
    smuggled = b"0\r\n\r\nGET /admin/keys HTTP/1.1\r\nhost: x\r\n\r\n"
    request = (
        f"POST {CHAT} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {gateway_run.key}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
        "transfer-encoding: chunked\r\n\r\n"
    ).encode() + smuggled
    answer = _raw(gateway_run.port, request)
    statuses = [line for line in answer.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")]
    assert statuses, answer
    assert statuses[0].startswith(b"HTTP/1.1 400"), answer[:300]
    assert len(statuses) == 1, "a second request was smuggled through"


def test_oversized_headers_are_refused(gateway_run: GatewayRun) -> None:
    request = (
        f"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\nx-big: {'a' * 200_000}\r\n\r\n"
    ).encode()
    answer = _raw(gateway_run.port, request)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
