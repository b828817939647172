"""Table definitions (SQLAlchemy Core). Alembic migrations are the source of truth for
the deployed schema; tests check that the migrated schema matches this metadata."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

__all__ = ["api_keys", "audit_records", "metadata"]

metadata = MetaData()

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("owner", String(200), nullable=False),
    Column("roles", JSON, nullable=False),
    Column("models", JSON, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)

# Append-only: the code offers insert and select, never update or delete.
audit_records = Table(
    "audit_records",
    metadata,
    Column(
        "seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("record_id", String(36), nullable=False, unique=True),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("event", String(32), nullable=False),
    Column("request_id", String(64), nullable=False),
    Column("subject", String(200), nullable=True),
    Column("username", String(200), nullable=True),
    Column("auth_method", String(16), nullable=True),
    Column("key_id", String(32), nullable=True),
    Column("client_addr", String(64), nullable=True),
    Column("http_method", String(8), nullable=False),
    Column("path", String(200), nullable=False),
    Column("model", String(200), nullable=True),
    Column("params", JSON, nullable=True),
    Column("status_code", Integer, nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("denial_reason", Text, nullable=True),
    Column("prompt_tokens", Integer, nullable=True),
    Column("completion_tokens", Integer, nullable=True),
    Column("latency_ms", Integer, nullable=True),
    Index("ix_audit_records_request_id", "request_id"),
    Index("ix_audit_records_subject", "subject"),
)
