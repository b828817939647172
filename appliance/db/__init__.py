"""Database engine, schema and migrations (SQLite embedded, PostgreSQL in production)."""

from __future__ import annotations

from appliance.db.engine import check_database, create_db_engine
from appliance.db.migrate import current_revision, upgrade_database
from appliance.db.tables import (
    api_keys,
    audit_checkpoints,
    audit_contents,
    audit_log,
    audit_subject_keys,
    metadata,
)

__all__ = [
    "api_keys",
    "audit_checkpoints",
    "audit_contents",
    "audit_log",
    "audit_subject_keys",
    "check_database",
    "create_db_engine",
    "current_revision",
    "metadata",
    "upgrade_database",
]
