"""appliance/db/migrate.py and migrations: the migrated schema is the declared schema."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from appliance.db import create_db_engine, current_revision, metadata, upgrade_database

HEAD = "0007"


def test_fresh_database_has_no_revision(database_url: str) -> None:
    engine = create_db_engine(database_url)
    try:
        assert current_revision(engine) is None
    finally:
        engine.dispose()


def test_upgrade_reaches_head_revision(migrated_engine: Engine) -> None:
    assert current_revision(migrated_engine) == HEAD


def test_migrated_schema_matches_metadata(migrated_engine: Engine) -> None:
    with migrated_engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True}
        )
        differences = compare_metadata(context, metadata)
    assert differences == []


def test_migrated_tables_and_columns_match_metadata(migrated_engine: Engine) -> None:
    # Belt and braces beside compare_metadata: names, nullability, keys and indexes.
    inspector = inspect(migrated_engine)
    assert set(inspector.get_table_names()) == set(metadata.tables) | {"alembic_version"}
    for name, table in metadata.tables.items():
        columns = {c["name"]: c for c in inspector.get_columns(name)}
        assert list(columns) == [c.name for c in table.columns]
        for column in table.columns:
            assert columns[column.name]["nullable"] == column.nullable, (name, column.name)
        primary = inspector.get_pk_constraint(name)["constrained_columns"]
        assert primary == [c.name for c in table.primary_key.columns]
        indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes(name)}
        for index in table.indexes:
            assert indexes.get(index.name) == [c.name for c in index.columns]


def test_unique_constraints_are_enforced(migrated_engine: Engine) -> None:
    inspector = inspect(migrated_engine)
    unique_keys = {
        tuple(u["column_names"]) for u in inspector.get_unique_constraints("api_keys")
    } | {tuple(i["column_names"]) for i in inspector.get_indexes("api_keys") if i["unique"]}
    assert ("key_hash",) in unique_keys
    unique_audit = {
        tuple(u["column_names"]) for u in inspector.get_unique_constraints("audit_log")
    } | {tuple(i["column_names"]) for i in inspector.get_indexes("audit_log") if i["unique"]}
    assert ("record_id",) in unique_audit


def test_upgrading_twice_is_a_no_op(migrated_engine: Engine) -> None:
    with migrated_engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO api_keys (key_id, key_hash, name, owner, roles, created_at) "
                "VALUES ('k1', 'h1', 'n', 'o', '[]', CURRENT_TIMESTAMP)"
            )
        )

    upgrade_database(migrated_engine)

    assert current_revision(migrated_engine) == HEAD
    with migrated_engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM api_keys")).scalar() == 1
        versions = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    assert [v for (v,) in versions] == [HEAD]


def test_sqlite_uses_wal_journal(tmp_path: Path) -> None:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'nested' / 'dir' / 'a.db'}")
    try:
        upgrade_database(engine)
        with engine.connect() as connection:
            assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            # FULL (2): a committed audit record survives power loss.
            assert connection.execute(text("PRAGMA synchronous")).scalar() == 2
            assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
    finally:
        engine.dispose()
    # The engine factory created the missing parent directories.
    assert (tmp_path / "nested" / "dir" / "a.db").is_file()


def test_0002_moves_plain_records_into_the_log(database_url: str) -> None:
    """A 0001 database with records upgrades to leaves the new log verifies."""
    from appliance.audit.checkpoint import NoteSigner
    from appliance.audit.store import SqlAuditStore
    from appliance.audit.verify import verify_log
    from tests.support.audit import ORIGIN, build_log, make_record

    engine = create_db_engine(database_url)
    try:
        upgrade_database(engine, "0001")
        with engine.begin() as connection:
            for i in range(3):
                connection.execute(
                    text(
                        "INSERT INTO audit_records (record_id, recorded_at, event, request_id, "
                        "http_method, path, status_code, outcome, params) VALUES "
                        f"('r{i}', CURRENT_TIMESTAMP, 'inference.request', 'req{i}', 'POST', "
                        "'/v1/chat/completions', 0, 'accepted', '{\"temperature\": 0.5}')"
                    )
                )
        upgrade_database(engine)
        assert current_revision(engine) == HEAD
        store = SqlAuditStore(engine)
        assert [r.request_id for r in store.latest()] == ["req2", "req1", "req0"]
        assert store.by_request("req0")[0].params == {"temperature": 0.5}
        signer = NoteSigner.generate(ORIGIN)
        log = build_log(engine, signer=signer)
        log.append(make_record("after-upgrade"))
        log.checkpoint()
        assert verify_log(store, signer.verifier(), origin=ORIGIN).records == 4
    finally:
        engine.dispose()


def test_0002_froze_the_version_1_leaf_it_writes() -> None:
    """The migration keeps its own copy of the leaf encoding; while today's leaf is
    still version 1, both must give the same bytes (NaN params, no team included)."""
    import importlib.util
    from datetime import UTC, datetime

    from appliance.audit.records import (
        LEAF_VERSION,
        AuditEvent,
        AuditRecord,
        Outcome,
        SealedEntry,
        leaf_bytes,
    )

    path = Path(__file__).parents[3] / "appliance/db/migrations/versions/0002_audit_log.py"
    spec = importlib.util.spec_from_file_location("migration_0002", path)
    assert spec is not None and spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    row = {
        "record_id": "r1", "recorded_at": datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        "event": "inference.request", "request_id": "req1", "subject": "apikey:a",
        "username": "a", "auth_method": "api_key", "key_id": "k", "client_addr": "10.0.0.1",
        "http_method": "POST", "path": "/v1/chat/completions", "model": "m",
        "params": {"temperature": float("nan"), "n": [1, 2]}, "status_code": 0,
        "outcome": "accepted", "denial_reason": None, "prompt_tokens": 3,
        "completion_tokens": None, "latency_ms": 7,
    }  # fmt: skip
    record = AuditRecord(
        **{**row, "event": AuditEvent(row["event"]), "outcome": Outcome(row["outcome"])}
    )
    assert LEAF_VERSION == 1, "a new leaf version: keep this test for the frozen v1 only"
    assert migration.leaf_v1(5, row) == leaf_bytes(SealedEntry(5, record, None, None))


def test_downgrade_to_0001_keeps_the_metadata(database_url: str) -> None:
    from alembic import command

    from appliance.db.migrate import alembic_config
    from tests.support.audit import build_log, make_record

    engine = create_db_engine(database_url)
    try:
        upgrade_database(engine)
        build_log(engine).append(make_record("kept"))
        command.downgrade(alembic_config(engine), "0001")
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT request_id FROM audit_records")).all()
        assert [r for (r,) in rows] == ["kept"]
    finally:
        engine.dispose()
