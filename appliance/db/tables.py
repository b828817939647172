"""Table definitions (SQLAlchemy Core). Alembic migrations are the source of truth for
the deployed schema; tests check that the migrated schema matches this metadata."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

__all__ = [
    "api_keys",
    "audit_checkpoints",
    "audit_contents",
    "audit_cosignatures",
    "audit_forward_cursor",
    "audit_log",
    "audit_subject_keys",
    "browser_logins",
    "browser_sessions",
    "conversations",
    "metadata",
]

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
    # The team the key's caller acts for (adapters are served to their teams).
    Column("team", String(128), nullable=True),
)

# The tamper-evident audit log (appliance/audit). Append-only: the code inserts and
# selects, never updates or deletes. ``idx`` is the Merkle leaf index, assigned by the
# writer; the primary key makes two writers claiming one index impossible.
audit_log = Table(
    "audit_log",
    metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("record_id", String(36), nullable=False, unique=True),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("event", String(32), nullable=False),
    Column("request_id", String(64), nullable=False),
    Column("subject", String(200), nullable=True),
    Column("username", String(200), nullable=True),
    Column("team", String(200), nullable=True),
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
    # SHA-256 of the content envelope and the subject key that sealed it (in the leaf).
    Column("content_sha256", LargeBinary(32), nullable=True),
    Column("content_key_id", String(32), nullable=True),
    # SHA-256(0x00 || leaf bytes): recomputable from the row; kept to load the tree
    # quickly and to name a changed row during verification.
    Column("leaf_hash", LargeBinary(32), nullable=False),
    Index("ix_audit_log_request_id", "request_id"),
    Index("ix_audit_log_subject", "subject"),
    Index("ix_audit_log_recorded_at", "recorded_at"),
)

# Encrypted content, apart from the leaves: retention drops rows here, never in
# audit_log, so proofs stay valid.
audit_contents = Table(
    "audit_contents",
    metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("envelope", LargeBinary, nullable=False),
)

# Signed checkpoints (C2SP signed notes), one per tree size, all kept. ``frontier`` is
# the compact range at that size (concatenated hashes) so a writer resumes without
# reading every leaf; it is checked against the signed root before use.
audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("tree_size", BigInteger, primary_key=True, autoincrement=False),
    Column("root_hash", LargeBinary(32), nullable=False),
    Column("note", Text, nullable=False),
    Column("frontier", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# Per-subject keys, wrapped by the master key. Shredding sets wrapped_key to NULL.
audit_subject_keys = Table(
    "audit_subject_keys",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("subject", String(200), nullable=False),
    Column("wrapped_key", LargeBinary, nullable=True),
    Column("master_key_id", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("shredded_at", DateTime(timezone=True), nullable=True),
    Index("ix_audit_subject_keys_subject", "subject"),
)

# Chat conversations of the browser UI (appliance/conversations). Title and messages
# are one envelope sealed under the owner's audit subject key, so shredding a subject
# (``appliance audit shred``) makes their chats unreadable too.
conversations = Table(
    "conversations",
    metadata,
    Column("conversation_id", String(32), primary_key=True),
    Column("subject", String(200), nullable=False),
    Column("key_id", String(32), nullable=False),
    Column("envelope", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_conversations_subject", "subject"),
)

# Witnesses' cosignatures of checkpoints (C2SP tlog-cosignature lines), kept beside
# the checkpoints they cosign: inserted, never updated (appliance/audit/witnessing.py).
audit_cosignatures = Table(
    "audit_cosignatures",
    metadata,
    Column("tree_size", BigInteger, primary_key=True, autoincrement=False),
    Column("witness", String(200), primary_key=True),
    Column("line", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# The SIEM forwarder's position (appliance/audit/forward_cursor.py), one row per
# destination (host:port:format): the next index to send, the leaf hash before it and
# when the SIEM last took a batch, which every gateway reads for the lag metrics.
# ``holder`` / ``held_until`` is the running forwarder's lease: a second one waits.
audit_forward_cursor = Table(
    "audit_forward_cursor",
    metadata,
    Column("destination", String(300), primary_key=True),
    Column("next_index", BigInteger, nullable=False),
    Column("last_leaf_hash", LargeBinary(32), nullable=True),
    Column("delivered_at", DateTime(timezone=True), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("holder", String(200), nullable=True),
    Column("held_until", DateTime(timezone=True), nullable=True),
)

# Browser sessions, shared by every gateway process and kept across restarts
# (appliance/identity/session_sql.py). The cookie's value is never stored: rows are
# keyed by its SHA-256. ``sealed`` is AES-GCM under a key derived from the deployment
# pepper: the principal, the CSRF token, and Keycloak's id and refresh tokens. Times are
# POSIX seconds, as the session logic uses them.
browser_sessions = Table(
    "browser_sessions",
    metadata,
    Column("session_digest", LargeBinary(32), primary_key=True),
    Column("key_id", String(32), nullable=True),  # API-key sessions: ended on revoke
    Column("created_at", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("access_expires_at", Float, nullable=False),
    Column("sealed", LargeBinary, nullable=False),
    Index("ix_browser_sessions_key_id", "key_id"),
    Index("ix_browser_sessions_expires_at", "expires_at"),
)

# Sign-ins in flight (Keycloak authorization code + PKCE): single use, ten minutes.
browser_logins = Table(
    "browser_logins",
    metadata,
    Column("state", String(128), primary_key=True),
    Column("created_at", Float, nullable=False),
    Column("sealed", LargeBinary, nullable=False),
)
