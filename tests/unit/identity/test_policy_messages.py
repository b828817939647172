"""The 403 message names the missing role and nothing about other models."""

from __future__ import annotations

from appliance.identity.policy import denial_reason, roles_granting
from appliance.identity.principal import AuthMethod, Principal

ROLE_MODELS = {
    "appliance-user": ["llama-*", "deepseek-v3"],
    "appliance-admin": ["*"],
    "research": ["deepseek-*"],
    "appliance-auditor": [],
}


def person(*roles: str, globs: tuple[str, ...] | None = None) -> Principal:
    return Principal("s", "u", AuthMethod.OIDC, roles=frozenset(roles), model_globs=globs)


def test_allowed_is_none() -> None:
    assert denial_reason(person("appliance-user"), "llama-8b", ROLE_MODELS) is None


def test_names_the_granting_roles_only() -> None:
    assert roles_granting("deepseek-v3", ROLE_MODELS) == [
        "appliance-admin",
        "appliance-user",
        "research",
    ]
    message = denial_reason(person("appliance-auditor"), "deepseek-r1", ROLE_MODELS)
    assert message == (
        "model 'deepseek-r1' requires one of the roles appliance-admin, research, "
        "which you do not have"
    )
    assert "llama" not in message
    single = denial_reason(person(), "x", {"appliance-user": ["x"]})
    assert single == "model 'x' requires the role appliance-user, which you do not have"


def test_no_role_grants_it() -> None:
    message = denial_reason(person("appliance-user"), "secret", {"appliance-user": ["llama-*"]})
    assert message == "you are not allowed to use model 'secret'"


def test_credential_restriction() -> None:
    message = denial_reason(
        person("appliance-user", globs=("llama-*",)), "deepseek-v3", ROLE_MODELS
    )
    assert message is not None and "restricted" in message
