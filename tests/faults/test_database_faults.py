"""The database under the gateway fails: down at start, cut mid-traffic (PostgreSQL,
through a TCP relay the test cuts), full (SQLite refusing to grow). The gateway fails
closed every time: no request reaches the engine without its durable record, no
2xx goes out without its completion record, nothing answers 500, and once the
database is back the log verifies green with no restart."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import Pool

from appliance.audit.store import SqlAuditStore
from appliance.audit.verify import verify_log
from appliance.audit.wiring import audit_verifier
from appliance.config import Settings
from appliance.db import create_db_engine, upgrade_database
from appliance.gateway import create_app
from appliance.gateway.services import utc_now
from appliance.identity.apikeys import ApiKeyService
from appliance.keys.deployment import DeploymentSecrets
from tests.integration.conftest import PEPPER, make_settings
from tests.support.fake_vllm import SECRET
from tests.support.requests import CHAT, auth, chat_body
from tests.support.servers import free_port

SECRETS = DeploymentSecrets(engine_api_key=SECRET, api_key_pepper=PEPPER)


class Relay:
    """A TCP relay to the database that the test can cut (drop every connection,
    refuse new ones) and restore."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = True
        self.live: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            server = socket.create_connection(self.target)
            with self.lock:
                self.live += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        self.up = False
        with self.lock:
            for sock in self.live:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.live.clear()

    def restore(self) -> None:
        self.up = True

    def close(self) -> None:
        self.cut()
        self.listener.close()


def _prepare(settings: Settings) -> tuple[Engine, str]:
    database = create_db_engine(settings.database_url)
    upgrade_database(database)
    key = (
        ApiKeyService(database, PEPPER)
        .create(name="faults", owner="tester", roles=["appliance-user"], models=None, now=utc_now())
        .secret
    )
    return database, key


def _assert_log_whole(
    database: Engine,
    settings: Settings,
    ok: list[str],
    refused: list[str] = (),  # type: ignore[assignment]
) -> None:
    store = SqlAuditStore(database)
    verify_log(store, audit_verifier(settings), origin=settings.audit.origin)
    for request_id in ok:
        events = [r.event.value for r in store.by_request(request_id)]
        assert events == ["inference.request", "inference.completion"], request_id
    # A refused request has no request or completion record (at most the refusal, once
    # the log takes records again): its request record failed, so nothing of the
    # engine's answer went out (the engine, which starts meanwhile, was cancelled).
    for request_id in refused:
        events = {r.event.value for r in store.by_request(request_id)}
        assert events <= {"request.denied"}, (request_id, events)


def _refused_unaudited(response) -> str:  # type: ignore[no-untyped-def]
    assert response.status_code == 503, (response.status_code, response.text)
    assert response.json()["error"]["code"] == "audit_unavailable", response.text
    assert "The" not in response.text  # no byte of the engine's answer
    return str(response.headers["x-request-id"])


@pytest.fixture
def relay_url(postgres_url: str) -> Iterator[tuple[str, Relay]]:
    from sqlalchemy.engine import make_url

    url = make_url(postgres_url)
    relay = Relay((url.host or "127.0.0.1", url.port or 5432))
    yield url.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False), relay
    relay.close()


@pytest.mark.postgres
@pytest.mark.timeout(120)
def test_database_cut_mid_traffic_fails_closed_then_recovers(
    tmp_path: Path, fake_vllm: tuple[str, object], relay_url: tuple[str, Relay]
) -> None:
    url, relay = relay_url
    upstream, _state = fake_vllm
    settings = make_settings(tmp_path, upstream).model_copy(
        update={"database": Settings(database={"url": url}).database}
    )
    database, key = _prepare(settings)
    ok: list[str] = []
    with TestClient(create_app(settings, secrets=SECRETS), raise_server_exceptions=False) as client:
        for _ in range(5):
            r = client.post(CHAT, json=chat_body(), headers=auth(key))
            assert r.status_code == 200, r.text
            ok.append(r.headers["x-request-id"])
        relay.cut()
        refused = [
            _refused_unaudited(client.post(CHAT, json=chat_body(), headers=auth(key)))
            for _ in range(5)
        ]
        relay.restore()
        statuses = []
        for _ in range(10):
            r = client.post(CHAT, json=chat_body(), headers=auth(key))
            statuses.append(r.status_code)
            if r.status_code == 200:
                ok.append(r.headers["x-request-id"])
        assert statuses[-5:] == [200] * 5, statuses  # recovered without a restart
        assert set(statuses) <= {200, 503}, statuses
    _assert_log_whole(database, settings, ok, refused)
    database.dispose()


def test_database_down_at_start_refuses_to_start(
    tmp_path: Path, fake_vllm: tuple[str, object]
) -> None:
    upstream, _state = fake_vllm
    closed = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test?connect_timeout=2"
    settings = make_settings(tmp_path, upstream).model_copy(
        update={"database": Settings(database={"url": closed}).database}
    )
    app = create_app(settings, secrets=SECRETS)
    with pytest.raises(Exception) as caught:
        with TestClient(app):
            pass
    assert "password" not in str(caught.value).lower() or "postgres@" not in str(caught.value)


def test_audit_disk_full_refuses_then_recovers(tmp_path: Path, fake_vllm) -> None:
    """SQLite refuses to grow the file (``max_page_count``: SQLITE_FULL, "database or
    disk is full", the code a full disk gives): the gateway answers 503 and no byte of
    the engine's answer (the engine, started beside the record, is cancelled); space
    back, it serves again and the log verifies green."""
    upstream, _state = fake_vllm
    settings = make_settings(tmp_path, upstream)
    database, key = _prepare(settings)
    full = {"on": False}

    def limit(dbapi_connection, _record, _proxy) -> None:  # type: ignore[no-untyped-def]
        cursor = dbapi_connection.cursor()
        if full["on"]:
            pages = cursor.execute("PRAGMA page_count").fetchone()[0]
            cursor.execute(f"PRAGMA max_page_count = {pages}")
        else:
            cursor.execute("PRAGMA max_page_count = 1073741823")
        cursor.close()

    event.listen(Pool, "checkout", limit)
    ok: list[str] = []
    try:
        with TestClient(
            create_app(settings, secrets=SECRETS), raise_server_exceptions=False
        ) as client:
            r = client.post(CHAT, json=chat_body(), headers=auth(key))
            assert r.status_code == 200
            ok.append(r.headers["x-request-id"])
            full["on"] = True
            big = "x" * 200_000  # more than the free pages left by the migrations
            refused = [
                _refused_unaudited(
                    client.post(
                        CHAT, json=chat_body(messages=[{"role": "user", "content": big}]),
                        headers=auth(key),
                    )
                )
                for _ in range(5)
            ]  # fmt: skip
            full["on"] = False
            r = client.post(CHAT, json=chat_body(), headers=auth(key))
            assert r.status_code == 200, r.text
            ok.append(r.headers["x-request-id"])
    finally:
        event.remove(Pool, "checkout", limit)
    _assert_log_whole(database, settings, ok, refused)
    database.dispose()
