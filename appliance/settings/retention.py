"""``audit.retention:``: how long sealed prompts and answers are kept, per event kind.

The floor and the kind names are checked where the policy is used
(appliance.audit.retention: gateway start, `appliance doctor`, `appliance audit
retention`), not here: a configuration below the floor still loads, so doctor and
`retention plan` can show what is wrong; and the event names live in the audit
package, which imports the settings.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field, field_validator

from appliance.settings.base import Section

__all__ = ["MIN_FLOOR_DAYS", "AuditRetentionSettings"]

# The EU AI Act (Art. 26(6)) has deployers keep the logs of a high-risk system for at
# least six months; 183 days covers every six-month span. The floor can be raised, not
# lowered: a shorter period needs a stated override_reason instead.
MIN_FLOOR_DAYS = 183

_KIND = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")


class AuditRetentionSettings(Section):
    """Retention of sealed content: `appliance audit retention apply` drops the content
    envelope of each record older than its kind's period; metadata, leaves and proofs
    stay (docs/audit.md, "Retention")."""

    default_days: int = Field(
        default=365,
        ge=1,
        description="Period for every event kind not named in kinds (days)",
    )
    kinds: dict[str, Annotated[int, Field(ge=1)]] = Field(
        default_factory=dict,
        description="Period per event kind (days), by event (inference.completion) or "
        "family (inference, request, audit, auth, admin); an event beats its family",
    )
    floor_days: int = Field(
        default=MIN_FLOOR_DAYS,
        ge=MIN_FLOOR_DAYS,
        description="No period may be shorter: the gateway refuses to start unless "
        "override_reason is set (default: six months, EU AI Act Art. 26(6))",
    )
    override_reason: str | None = Field(
        default=None,
        min_length=10,
        max_length=500,
        description="Why periods below floor_days are allowed here (e.g. the rulebook "
        "that demands it); recorded in the audit log at every gateway start",
    )

    @field_validator("kinds")
    @classmethod
    def _known_kinds(cls, kinds: dict[str, int]) -> dict[str, int]:
        for kind in kinds:
            if not _KIND.match(kind):
                raise ValueError(f"{kind!r} is not an event kind (e.g. inference.completion)")
        return kinds

    @field_validator("override_reason")
    @classmethod
    def _stated(cls, reason: str | None) -> str | None:
        return None if reason is None or not reason.strip() else reason.strip()
