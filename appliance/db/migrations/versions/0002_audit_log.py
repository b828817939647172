"""Tamper-evident audit log: Merkle leaves, encrypted contents, signed checkpoints,
per-subject keys. Plain 0001 audit records move into the log as leaves without
content (their tamper evidence starts at the first checkpoint signed after this).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_LEGACY_COLUMNS = (
    "record_id", "recorded_at", "event", "request_id", "subject", "username", "auth_method",
    "key_id", "client_addr", "http_method", "path", "model", "params", "status_code",
    "outcome", "denial_reason", "prompt_tokens", "completion_tokens", "latency_ms",
)  # fmt: skip


def _create_tables() -> None:
    op.create_table(
        "audit_log",
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("record_id", sa.String(36), nullable=False, unique=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(200), nullable=True),
        sa.Column("username", sa.String(200), nullable=True),
        sa.Column("team", sa.String(200), nullable=True),
        sa.Column("auth_method", sa.String(16), nullable=True),
        sa.Column("key_id", sa.String(32), nullable=True),
        sa.Column("client_addr", sa.String(64), nullable=True),
        sa.Column("http_method", sa.String(8), nullable=False),
        sa.Column("path", sa.String(200), nullable=False),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("params", sa.JSON, nullable=True),
        sa.Column("status_code", sa.Integer, nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("denial_reason", sa.Text, nullable=True),
        sa.Column("prompt_tokens", sa.Integer, nullable=True),
        sa.Column("completion_tokens", sa.Integer, nullable=True),
        sa.Column("latency_ms", sa.Integer, nullable=True),
        sa.Column("content_sha256", sa.LargeBinary(32), nullable=True),
        sa.Column("content_key_id", sa.String(32), nullable=True),
        sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
    )
    op.create_index("ix_audit_log_request_id", "audit_log", ["request_id"])
    op.create_index("ix_audit_log_subject", "audit_log", ["subject"])
    op.create_index("ix_audit_log_recorded_at", "audit_log", ["recorded_at"])
    op.create_table(
        "audit_contents",
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("envelope", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "audit_checkpoints",
        sa.Column("tree_size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("root_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("frontier", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "audit_subject_keys",
        sa.Column("key_id", sa.String(32), primary_key=True),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("wrapped_key", sa.LargeBinary, nullable=True),
        sa.Column("master_key_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("shredded_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_audit_subject_keys_subject", "audit_subject_keys", ["subject"])


def _legacy_rows(connection: sa.Connection) -> list[dict[str, Any]]:
    legacy = sa.table("audit_records", sa.column("seq"), *(sa.column(c) for c in _LEGACY_COLUMNS))
    legacy.c.params.type = sa.JSON()
    legacy.c.recorded_at.type = sa.DateTime(timezone=True)
    rows = connection.execute(sa.select(legacy).order_by(legacy.c.seq))
    return [dict(row._mapping) for row in rows]


def _finite(value: Any) -> Any:
    """Non-finite floats as strings (canonical JSON has no NaN or Infinity)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def leaf_v1(index: int, row: dict[str, Any]) -> bytes:
    """The version-1 Merkle leaf of a 0001 record, frozen here as it was when this
    migration was written: a later leaf version must not change what this migration
    produced (tests/unit/db/test_migrations.py checks it against today's encoding while
    that is still version 1)."""
    at = row["recorded_at"].astimezone(UTC).replace(tzinfo=None)
    meta = {
        **{name: row[name] for name in _LEGACY_COLUMNS},
        "recorded_at": at.isoformat(timespec="microseconds") + "Z",
        "params": None if row["params"] is None else _finite(row["params"]),
        "team": None,  # 0001 had no team column
    }
    leaf = {"v": 1, "index": index, "meta": meta, "content": None}
    return json.dumps(
        leaf, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def upgrade() -> None:
    _create_tables()
    connection = op.get_bind()
    rows = _legacy_rows(connection)
    if rows:
        log = sa.table("audit_log", *(sa.column(c) for c in (*_LEGACY_COLUMNS, "idx", "leaf_hash")))
        log.c.params.type = sa.JSON()
        values = []
        for index, row in enumerate(rows):
            row.pop("seq")
            at = row["recorded_at"]
            row["recorded_at"] = at.replace(tzinfo=UTC) if at.tzinfo is None else at
            # RFC 6962 §2.1: the leaf hash is SHA-256(0x00 || leaf).
            leaf = hashlib.sha256(b"\x00" + leaf_v1(index, row)).digest()
            values.append({**row, "idx": index, "leaf_hash": leaf})
        connection.execute(sa.insert(log), values)
    op.drop_table("audit_records")


def downgrade() -> None:
    op.create_table(
        "audit_records",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("record_id", sa.String(36), nullable=False, unique=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(200), nullable=True),
        sa.Column("username", sa.String(200), nullable=True),
        sa.Column("auth_method", sa.String(16), nullable=True),
        sa.Column("key_id", sa.String(32), nullable=True),
        sa.Column("client_addr", sa.String(64), nullable=True),
        sa.Column("http_method", sa.String(8), nullable=False),
        sa.Column("path", sa.String(200), nullable=False),
        sa.Column("model", sa.String(200), nullable=True),
        sa.Column("params", sa.JSON, nullable=True),
        sa.Column("status_code", sa.Integer, nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("denial_reason", sa.Text, nullable=True),
        sa.Column("prompt_tokens", sa.Integer, nullable=True),
        sa.Column("completion_tokens", sa.Integer, nullable=True),
        sa.Column("latency_ms", sa.Integer, nullable=True),
    )
    op.create_index("ix_audit_records_request_id", "audit_records", ["request_id"])
    op.create_index("ix_audit_records_subject", "audit_records", ["subject"])
    # Metadata goes back; content, checkpoints and subject keys have no 0001 home.
    columns = ", ".join(_LEGACY_COLUMNS)
    op.execute(
        f"INSERT INTO audit_records ({columns}) SELECT {columns} FROM audit_log ORDER BY idx"  # noqa: S608
    )
    op.drop_table("audit_subject_keys")
    op.drop_table("audit_checkpoints")
    op.drop_table("audit_contents")
    op.drop_table("audit_log")
