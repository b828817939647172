"""appliance/identity/policy.py: roles and credential globs decide which models a caller may use."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.identity import AuthMethod, Principal, allowed_models, is_model_allowed

ROLE_MODELS = {
    "appliance-user": ["smollm2-*", "llama-3-8b"],
    "research": ["llama-*", "mistral-7b"],
    "appliance-admin": ["*"],
}
MODELS = ["smollm2-135m-instruct", "llama-3-8b", "llama-3-70b", "mistral-7b", "qwen-7b"]


def principal(*roles: str, globs: tuple[str, ...] | None = None) -> Principal:
    return Principal(
        subject="user:1",
        username="alice",
        auth_method=AuthMethod.API_KEY,
        roles=frozenset(roles),
        model_globs=globs,
    )


@pytest.mark.parametrize(
    ("roles", "expected"),
    [
        (("appliance-user",), ["smollm2-135m-instruct", "llama-3-8b"]),
        (("research",), ["llama-3-8b", "llama-3-70b", "mistral-7b"]),
        (
            ("appliance-user", "research"),
            ["smollm2-135m-instruct", "llama-3-8b", "llama-3-70b", "mistral-7b"],
        ),
        (("appliance-admin",), MODELS),
        (("unknown-role",), []),
        ((), []),
    ],
)
def test_role_globs(roles: tuple[str, ...], expected: list[str]) -> None:
    assert allowed_models(principal(*roles), MODELS, ROLE_MODELS) == expected


def test_no_roles_allows_nothing_even_with_credential_globs() -> None:
    nobody = principal(globs=("*",))
    assert not any(is_model_allowed(nobody, model, ROLE_MODELS) for model in MODELS)


def test_credential_globs_restrict_roles() -> None:
    admin_limited = principal("appliance-admin", globs=("llama-*",))
    assert allowed_models(admin_limited, MODELS, ROLE_MODELS) == ["llama-3-8b", "llama-3-70b"]


def test_credential_globs_cannot_widen_roles() -> None:
    user_wide = principal("appliance-user", globs=("*",))
    assert not is_model_allowed(user_wide, "qwen-7b", ROLE_MODELS)
    assert allowed_models(user_wide, MODELS, ROLE_MODELS) == allowed_models(
        principal("appliance-user"), MODELS, ROLE_MODELS
    )


def test_empty_credential_globs_allow_nothing() -> None:
    # () is a restriction to no models, unlike None (no restriction).
    assert allowed_models(principal("appliance-admin", globs=()), MODELS, ROLE_MODELS) == []


def test_globs_are_case_sensitive() -> None:
    assert not is_model_allowed(principal("research"), "LLAMA-3-8B", ROLE_MODELS)


def test_glob_character_classes_and_single_char() -> None:
    role_models = {"r": ["model-?b", "v[12]"]}
    p = principal("r")
    assert is_model_allowed(p, "model-7b", role_models)
    assert not is_model_allowed(p, "model-70b", role_models)
    assert is_model_allowed(p, "v2", role_models)
    assert not is_model_allowed(p, "v3", role_models)


def test_order_of_input_is_kept() -> None:
    models = list(reversed(MODELS))
    assert allowed_models(principal("appliance-admin"), models, ROLE_MODELS) == models


# -- invariants -------------------------------------------------------------------------

names = st.text(alphabet="abcxyz-*?", min_size=1, max_size=6)
model_names = st.text(alphabet="abcxyz-", min_size=1, max_size=6)
role_names = st.sampled_from(["r1", "r2", "r3", "r4"])
role_maps = st.dictionaries(role_names, st.lists(names, max_size=3), max_size=4)
globs_or_none = st.none() | st.lists(names, max_size=3).map(tuple)


@given(
    roles=st.frozensets(role_names),
    globs=globs_or_none,
    models=st.lists(model_names, max_size=8),
    role_models=role_maps,
)
def test_allowed_models_is_subset_of_input(
    roles: frozenset[str],
    globs: tuple[str, ...] | None,
    models: list[str],
    role_models: dict[str, list[str]],
) -> None:
    p = principal(*roles, globs=globs)
    allowed = allowed_models(p, models, role_models)
    assert set(allowed) <= set(models)
    # It is a filter: exactly the admitted models, in input order.
    assert allowed == [m for m in models if is_model_allowed(p, m, role_models)]


@given(
    roles=st.frozensets(role_names),
    extra_roles=st.frozensets(role_names),
    globs=globs_or_none,
    models=st.lists(model_names, max_size=8),
    role_models=role_maps,
)
def test_more_roles_never_remove_models(
    roles: frozenset[str],
    extra_roles: frozenset[str],
    globs: tuple[str, ...] | None,
    models: list[str],
    role_models: dict[str, list[str]],
) -> None:
    fewer = allowed_models(principal(*roles, globs=globs), models, role_models)
    more = allowed_models(principal(*(roles | extra_roles), globs=globs), models, role_models)
    assert set(fewer) <= set(more)


@given(
    roles=st.frozensets(role_names),
    globs=globs_or_none,
    models=st.lists(model_names, max_size=8),
    role_models=role_maps,
    grant_role=role_names,
    grant=names,
)
def test_wider_role_grants_never_remove_models(
    roles: frozenset[str],
    globs: tuple[str, ...] | None,
    models: list[str],
    role_models: dict[str, list[str]],
    grant_role: str,
    grant: str,
) -> None:
    wider = {role: list(patterns) for role, patterns in role_models.items()}
    wider.setdefault(grant_role, []).append(grant)
    p = principal(*roles, globs=globs)
    assert set(allowed_models(p, models, role_models)) <= set(allowed_models(p, models, wider))


@given(
    roles=st.frozensets(role_names),
    globs=st.lists(names, max_size=3).map(tuple),
    models=st.lists(model_names, max_size=8),
    role_models=role_maps,
)
def test_credential_restriction_never_adds_models(
    roles: frozenset[str],
    globs: tuple[str, ...],
    models: list[str],
    role_models: dict[str, list[str]],
) -> None:
    restricted = allowed_models(principal(*roles, globs=globs), models, role_models)
    unrestricted = allowed_models(principal(*roles), models, role_models)
    assert set(restricted) <= set(unrestricted)
