"""The audit store a command reads, opened from the configuration and closed after."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from appliance.audit.store import SqlAuditStore
from appliance.cli.common import settings_from
from appliance.config import Settings
from appliance.db import create_db_engine

__all__ = ["audit_store"]


@contextmanager
def audit_store(config: Path | None) -> Iterator[tuple[Settings, SqlAuditStore]]:
    settings = settings_from(config)
    engine = create_db_engine(settings.database_url)
    try:
        yield settings, SqlAuditStore(engine)
    finally:
        engine.dispose()
