"""Browser sessions and pending sign-ins (time is a parameter)."""

from __future__ import annotations

import pytest

from appliance.identity.browser import pkce_challenge, safe_next_path
from appliance.identity.principal import AuthMethod, Principal
from appliance.identity.sessions import PendingLogin, SessionStore

ALICE = Principal("s", "alice", AuthMethod.OIDC)


def login(state: str = "st", binding: str = "b", created: float = 0.0) -> PendingLogin:
    return PendingLogin(state=state, nonce="n", code_verifier="v", redirect_uri="r",
                        next_path="/", created_at=created, browser_binding=binding)  # fmt: skip


def test_session_ttl_idle_and_delete() -> None:
    store = SessionStore(ttl_s=100, idle_s=30)
    sid, _session = store.create(ALICE, now=0, access_expires_at=50)
    assert store.get(sid, now=29).principal is ALICE  # type: ignore[union-attr]
    assert store.get(sid, now=58) is not None  # idle timer restarted at 29
    assert store.get(sid, now=89) is None  # idle 31 s
    sid, _ = store.create(ALICE, now=0, access_expires_at=50)
    for second in range(10, 100, 10):
        assert store.get(sid, now=second) is not None
    assert store.get(sid, now=100) is None  # absolute TTL
    sid, _ = store.create(ALICE, now=0, access_expires_at=50)
    assert store.delete(sid) is not None and store.get(sid, now=1) is None
    assert store.get("never-issued", now=1) is None


def test_csrf_token_comparison() -> None:
    _, session = SessionStore(ttl_s=10, idle_s=10).create(ALICE, now=0, access_expires_at=5)
    assert session.csrf_matches(session.csrf_token)
    assert not session.csrf_matches(None) and not session.csrf_matches("x")


def test_pending_login_is_single_use_bound_and_expires() -> None:
    store = SessionStore(ttl_s=10, idle_s=10, login_ttl_s=600)
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
