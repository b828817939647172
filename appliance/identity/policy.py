"""Pure model-access policy: roles (and the credential's own globs) to models."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from fnmatch import fnmatchcase

from appliance.identity.principal import Principal

__all__ = [
    "adapter_denial_reason",
    "allowed_models",
    "caller_teams",
    "denial_reason",
    "is_model_allowed",
    "roles_granting",
]


def _matches(model: str, globs: Iterable[str]) -> bool:
    return any(fnmatchcase(model, pattern) for pattern in globs)


def is_model_allowed(
    principal: Principal, model: str, role_models: Mapping[str, Sequence[str]]
) -> bool:
    """A model is allowed when one of the principal's roles grants it and the
    credential's own restriction (if any) also admits it."""
    granted = any(_matches(model, role_models.get(role, ())) for role in principal.roles)
    if not granted:
        return False
    if principal.model_globs is None:
        return True
    return _matches(model, principal.model_globs)


def allowed_models(
    principal: Principal, models: Iterable[str], role_models: Mapping[str, Sequence[str]]
) -> list[str]:
    return [model for model in models if is_model_allowed(principal, model, role_models)]


def roles_granting(model: str, role_models: Mapping[str, Sequence[str]]) -> list[str]:
    """The roles whose globs admit ``model``, sorted."""
    return sorted(role for role, globs in role_models.items() if _matches(model, globs))


def denial_reason(
    principal: Principal, model: str, role_models: Mapping[str, Sequence[str]]
) -> str | None:
    """None when ``principal`` may use ``model``; else the message for the 403. It names
    the missing role and nothing about which other models exist."""
    if is_model_allowed(principal, model, role_models):
        return None
    granting = roles_granting(model, role_models)
    if granting and principal.roles.intersection(granting):
        return f"this credential is restricted and may not use model {model!r}"
    if not granting:
        return f"you are not allowed to use model {model!r}"
    needed = (
        f"the role {granting[0]}"
        if len(granting) == 1
        else "one of the roles " + ", ".join(granting)
    )
    return f"model {model!r} requires {needed}, which you do not have"


def caller_teams(principal: Principal, team_group_prefix: str | None = "/teams/") -> frozenset[str]:
    """The teams a caller acts for: its team (an API key's team, the OIDC team claim)
    and every group under ``team_group_prefix`` (``/teams/legal`` -> ``legal``)."""
    teams = {principal.team} if principal.team else set()
    if team_group_prefix:
        teams |= {
            group[len(team_group_prefix) :]
            for group in principal.groups
            if group.startswith(team_group_prefix) and len(group) > len(team_group_prefix)
        }
    return frozenset(teams)


def adapter_denial_reason(
    principal: Principal,
    model: str,
    teams: Iterable[str],
    team_group_prefix: str | None = "/teams/",
) -> str | None:
    """None when one of the caller's teams owns the adapter ``model``; else the 403's
    message. It names the caller's own team, never the adapter's teams."""
    mine = caller_teams(principal, team_group_prefix)
    if mine.intersection(teams):
        return None
    if not mine:
        return f"adapter {model!r} is served to its teams only, and this credential has no team"
    return f"adapter {model!r} is not granted to your team ({', '.join(sorted(mine))})"
