"""Pure model-access policy: roles (and the credential's own globs) to models."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from fnmatch import fnmatchcase

from appliance.identity.principal import Principal

__all__ = ["allowed_models", "is_model_allowed"]


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
