"""``database:``: where the appliance keeps keys, audit records and conversations."""

from __future__ import annotations

from pydantic import Field

from appliance.settings.base import Section

__all__ = ["DatabaseSettings"]


class DatabaseSettings(Section):
    url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default: SQLite file appliance.db in the data directory. "
        "PostgreSQL: postgresql+psycopg://user@host/db",
    )
