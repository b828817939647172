"""``policy:``: which roles may use which models."""

from __future__ import annotations

from pydantic import Field

from appliance.identity.roles import Role
from appliance.settings.base import Section

__all__ = ["PolicySettings"]


class PolicySettings(Section):
    role_models: dict[str, list[str]] = Field(
        default_factory=lambda: {Role.USER.value: ["*"], Role.ADMIN.value: ["*"]},
        description="Role -> glob patterns of the models that role may use",
    )
