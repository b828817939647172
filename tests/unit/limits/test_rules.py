from __future__ import annotations

from appliance.limits.rules import (
    Limits,
    estimate_tokens,
    principal_limits,
    request_priority,
    reservation,
    team_limits,
)


def test_most_generous_role_wins_and_none_is_unlimited() -> None:
    rules = {"user": Limits(rpm=10, tpm=1000, concurrency=2), "power": Limits(rpm=100, tpm=None)}
    assert principal_limits(frozenset({"user"}), rules) == Limits(10, 1000, 2)
    assert principal_limits(frozenset({"user", "power"}), rules) == Limits(100, None, None)
    assert principal_limits(frozenset({"other"}), rules) is None


def test_team_default() -> None:
    rules = {"ml": Limits(rpm=5), "*": Limits(rpm=1)}
    assert team_limits("ml", rules) == Limits(rpm=5)
    assert team_limits("sales", rules) == Limits(rpm=1)
    assert team_limits(None, rules) is None


def test_reservation() -> None:
    chat = {"messages": [{"role": "user", "content": "x" * 400}], "max_tokens": 50}
    assert reservation(chat, 1024) > 100 + 50
    assert reservation({"prompt": "hi"}, 1024) == estimate_tokens(len('"hi"'), 1024)
    assert reservation({"prompt": "hi", "max_tokens": True}, 7) == estimate_tokens(4, 7)


def test_priority_lowest_wins() -> None:
    assert request_priority(frozenset({"a", "b"}), {"a": 5, "b": -1}) == -1
    assert request_priority(frozenset({"c"}), {"a": 5}) is None
