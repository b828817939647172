"""Per-team adapters: which teams a caller acts for, and the 403's reason."""

from __future__ import annotations

from appliance.identity.policy import adapter_denial_reason, caller_teams
from appliance.identity.principal import AuthMethod, Principal

MODEL = "smollm2-135m-instruct:legal-v1"


def caller(team: str | None = None, groups: tuple[str, ...] = ()) -> Principal:
    return Principal(
        subject="s", username="u", auth_method=AuthMethod.OIDC, roles=frozenset({"r"}),
        team=team, groups=frozenset(groups),
    )  # fmt: skip


def test_teams_are_the_team_and_groups_under_the_prefix() -> None:
    principal = caller("legal", ("/teams/compliance", "/teams/", "/projects/x", "ops"))
    assert caller_teams(principal) == {"legal", "compliance"}
    assert caller_teams(principal, None) == {"legal"}
    assert caller_teams(principal, "/projects/") == {"legal", "x"}
    assert caller_teams(caller()) == frozenset()


def test_a_team_of_the_adapter_may_use_it() -> None:
    assert adapter_denial_reason(caller("legal"), MODEL, ["legal", "compliance"]) is None
    assert (
        adapter_denial_reason(caller(groups=("/teams/compliance",)), MODEL, ["compliance"]) is None
    )


def test_another_team_is_told_why_without_the_adapters_teams() -> None:
    reason = adapter_denial_reason(caller("research"), MODEL, ["legal", "compliance"])
    assert reason == f"adapter {MODEL!r} is not granted to your team (research)"
    assert "legal" not in reason.replace(MODEL, "")


def test_a_caller_without_a_team_is_told_so() -> None:
    reason = adapter_denial_reason(caller(), MODEL, ["legal"])
    assert reason is not None and "has no team" in reason


def test_team_names_match_exactly() -> None:
    assert adapter_denial_reason(caller("Legal"), MODEL, ["legal"]) is not None
    assert adapter_denial_reason(caller(groups=("/teams/legal/eu",)), MODEL, ["legal"]) is not None
