"""Shared fixtures: databases (SQLite and PostgreSQL), settings, clocks."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import Engine, create_engine, text

from appliance.db import create_db_engine, upgrade_database
from tests.support.redis import require_redis

POSTGRES_ENV = "APPLIANCE_TEST_DATABASE_URL"
REQUIRE_POSTGRES_ENV = "APPLIANCE_TEST_REQUIRE_POSTGRES"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _throwaway_postgres(workdir: Path) -> Iterator[str]:
    """Start a private PostgreSQL from local binaries (initdb refuses to run as root)."""
    initdb = shutil.which("initdb")
    pg_ctl = shutil.which("pg_ctl")
    if not initdb or not pg_ctl:
        raise RuntimeError("no PostgreSQL binaries (initdb, pg_ctl) on PATH")
    if os.geteuid() == 0:
        raise RuntimeError("initdb cannot run as root")
    data = workdir / "pgdata"
    subprocess.run(
        [initdb, "-D", str(data), "-A", "trust", "-U", "postgres"], check=True, capture_output=True
    )
    port = free_port()
    subprocess.run(
        [pg_ctl, "-D", str(data), "-o", f"-p {port} -k {workdir} -h 127.0.0.1", "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    configured = os.environ.get(POSTGRES_ENV)
    if configured:
        yield configured
        return
    reason = ""
    with tempfile.TemporaryDirectory() as workdir:
        try:
            yield from _throwaway_postgres(Path(workdir))
            return
        except (RuntimeError, subprocess.CalledProcessError) as exc:
            reason = f"PostgreSQL tests need {POSTGRES_ENV} or local binaries: {exc}"
    if os.environ.get(REQUIRE_POSTGRES_ENV) == "1":
        pytest.fail(f"{REQUIRE_POSTGRES_ENV}=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh schema per test on the PostgreSQL server, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_server_url.replace("postgresql://", "postgresql+psycopg://"))
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in postgres_server_url else "?"
    yield f"{postgres_server_url}{separator}options={quote(f'-csearch_path={schema}')}"
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each storage test runs against both SQLite and PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'appliance.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def migrated_engine(database_url: str) -> Iterator[Engine]:
    engine = create_db_engine(database_url)
    upgrade_database(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def wait_until():
    """Poll a condition (for background effects such as a cancelled upstream request);
    the deadline only bounds a hang, it is not what the test measures."""

    def _wait(condition, timeout_s: float = 10.0, interval_s: float = 0.05) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(interval_s)
        return bool(condition())

    return _wait


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The test Redis (APPLIANCE_TEST_REDIS_URL or the local default), or skip/fail."""
    return require_redis()
