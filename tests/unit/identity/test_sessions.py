"""Browser sessions and pending sign-ins (time is a parameter)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from appliance.db import create_db_engine, upgrade_database
from appliance.db.tables import browser_logins, browser_sessions
from appliance.identity.browser import pkce_challenge, safe_next_path
from appliance.identity.principal import AuthMethod, Principal
from appliance.identity.session_sql import SqlSessions, session_sealing_key
from appliance.identity.sessions import PendingLogin, SessionStore

ALICE = Principal("s", "alice", AuthMethod.OIDC)
BOB_KEY = Principal(
    "apikey:k1", "bob", AuthMethod.API_KEY, roles=frozenset({"appliance-user"}),
    model_globs=("fake-*",), key_id="k1", team="research",
)  # fmt: skip
Store = Callable[..., SessionStore]


@pytest.fixture(params=["memory", "sql"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """The same rules over both backends (the database one here on SQLite; the tests
    below that take ``migrated_engine`` run on SQLite and PostgreSQL)."""
    if request.param == "memory":
        yield lambda **kw: SessionStore(**kw)
        return
    engine = create_db_engine(f"sqlite:///{tmp_path / 'sessions.db'}")
    upgrade_database(engine)
    backend = SqlSessions(engine, session_sealing_key("pepper"))
    yield lambda **kw: SessionStore(backend=backend, **kw)
    engine.dispose()


def login(state: str = "st", binding: str = "b", created: float = 0.0) -> PendingLogin:
    return PendingLogin(state=state, nonce="n", code_verifier="v", redirect_uri="r",
                        next_path="/", created_at=created, browser_binding=binding)  # fmt: skip


def test_session_ttl_idle_and_delete(make_store: Store) -> None:
    store = make_store(ttl_s=100, idle_s=30)
    sid, _session = store.create(ALICE, now=0, access_expires_at=50)
    assert store.get(sid, now=29).principal == ALICE  # type: ignore[union-attr]
    assert store.get(sid, now=58) is not None  # idle timer restarted at 29
    assert store.get(sid, now=89) is None  # idle 31 s
    sid, _ = store.create(ALICE, now=0, access_expires_at=50)
    for second in range(10, 100, 10):
        assert store.get(sid, now=second) is not None
    assert store.get(sid, now=100) is None  # absolute TTL
    sid, _ = store.create(ALICE, now=0, access_expires_at=50)
    assert store.delete(sid) is not None and store.get(sid, now=1) is None
    assert store.get("never-issued", now=1) is None


def test_csrf_token_comparison(make_store: Store) -> None:
    _, session = make_store(ttl_s=10, idle_s=10).create(ALICE, now=0, access_expires_at=5)
    assert session.csrf_matches(session.csrf_token)
    assert not session.csrf_matches(None) and not session.csrf_matches("x")


def test_pending_login_is_single_use_bound_and_expires(make_store: Store) -> None:
    store = make_store(ttl_s=10, idle_s=10, login_ttl_s=600)
    store.begin_login(login())
    with pytest.raises(LookupError, match="another browser"):
        store.finish_login("st", "wrong", now=1)
    store.begin_login(login())
    assert store.finish_login("st", "b", now=1).nonce == "n"
    with pytest.raises(LookupError):
        store.finish_login("st", "b", now=1)  # used
    store.begin_login(login())
    with pytest.raises(LookupError, match="expired"):
        store.finish_login("st", "b", now=601)


def test_a_session_comes_back_whole_and_key_sessions_end_together(make_store: Store) -> None:
    store = make_store(ttl_s=100, idle_s=30)
    sid, made = store.create(BOB_KEY, now=0, access_expires_at=10, refresh_token="rt")
    other, _ = store.create(BOB_KEY, now=1, access_expires_at=10)
    keep, _ = store.create(ALICE, now=2, access_expires_at=10, id_token="it")
    found = store.get(sid, now=1)
    assert found is not None and found.principal == BOB_KEY
    assert (found.csrf_token, found.refresh_token) == (made.csrf_token, "rt")
    assert len(store) == 3
    assert store.end_key_sessions("k1") == 2
    assert store.get(sid, now=3) is None and store.get(other, now=3) is None
    assert store.get(keep, now=3) is not None and len(store) == 1


def test_the_database_holds_no_cookie_and_no_token_in_clear(migrated_engine: Engine) -> None:
    backend = SqlSessions(migrated_engine, session_sealing_key("pepper"))
    store = SessionStore(ttl_s=100, idle_s=30, backend=backend)
    sid, made = store.create(ALICE, now=0, access_expires_at=10, refresh_token="rt-SECRET")
    store.begin_login(login(state="state-1", binding="binding-SECRET"))
    with migrated_engine.connect() as connection:
        rows: list[Any] = [*connection.execute(select(browser_sessions)).all()]
        rows += connection.execute(select(browser_logins)).all()
    dump = repr(rows).encode()
    for secret in (sid, made.csrf_token, "rt-SECRET", "alice", "binding-SECRET"):
        assert secret.encode() not in dump
    # Another deployment's pepper (or a rotated one) opens nothing: signed out.
    stranger = SessionStore(
        ttl_s=100, idle_s=30, backend=SqlSessions(migrated_engine, session_sealing_key("x"))
    )
    assert stranger.get(sid, now=1) is None
    assert store.get(sid, now=1) is not None


def test_a_restarted_store_on_the_same_database_keeps_sessions(migrated_engine: Engine) -> None:
    key = session_sealing_key("pepper")
    first = SessionStore(ttl_s=100, idle_s=30, backend=SqlSessions(migrated_engine, key))
    sid, _ = first.create(ALICE, now=0, access_expires_at=10)
    first.begin_login(login())
    second = SessionStore(ttl_s=100, idle_s=30, backend=SqlSessions(migrated_engine, key))
    assert second.get(sid, now=5) is not None
    assert second.finish_login("st", "b", now=1).nonce == "n"
    with pytest.raises(LookupError):
        first.finish_login("st", "b", now=1)  # used by the other process


def test_last_seen_is_written_at_most_every_tenth_of_the_idle_time(
    migrated_engine: Engine,
) -> None:
    store = SessionStore(
        ttl_s=1000, idle_s=100,
        backend=SqlSessions(migrated_engine, session_sealing_key("pepper")),
    )  # fmt: skip

    def stored_last_seen() -> float:
        with migrated_engine.connect() as connection:
            return float(connection.execute(select(browser_sessions.c.last_seen)).scalar_one())

    sid, _ = store.create(ALICE, now=0, access_expires_at=10)
    store.get(sid, now=5)
    assert stored_last_seen() == 0  # within 10 s: no write
    store.get(sid, now=11)
    assert stored_last_seen() == 11


def test_pkce_s256_vector_from_rfc7636_appendix_b() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert pkce_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("/chat", "/chat"), (None, "/"), ("", "/"), ("https://evil.example", "/"),
     ("//evil.example", "/"), ("/\\evil.example", "/"), ("/\t/evil.example", "/"),
     ("/\n/evil", "/"), ("/a b", "/"), ("chat", "/")],
)  # fmt: skip
def test_next_path_is_same_origin_only(value: str | None, expected: str) -> None:
    assert safe_next_path(value) == expected
