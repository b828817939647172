"""The appliance's roles: one spelling, used by the realm export, the role checks,
the routes and the default policy."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Role"]


class Role(StrEnum):
    USER = "appliance-user"  # use the models the policy grants (chat, API)
    AUDITOR = "appliance-auditor"  # compliance officer: read, verify, export the audit log
    ADMIN = "appliance-admin"  # API keys and configuration, no audit content
    WITNESS = "appliance-witness"  # a monitor: checkpoints and consistency proofs only
