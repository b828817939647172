"""appliance/db/migrate.py and migrations: the migrated schema is the declared schema."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from appliance.db import create_db_engine, current_revision, metadata, upgrade_database


def test_fresh_database_has_no_revision(database_url: str) -> None:
    engine = create_db_engine(database_url)
    try:
        assert current_revision(engine) is None
    finally:
        engine.dispose()


def test_upgrade_reaches_head_revision(migrated_engine: Engine) -> None:
    assert current_revision(migrated_engine) == "0001"


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
        tuple(u["column_names"]) for u in inspector.get_unique_constraints("audit_records")
    } | {tuple(i["column_names"]) for i in inspector.get_indexes("audit_records") if i["unique"]}
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

    assert current_revision(migrated_engine) == "0001"
    with migrated_engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM api_keys")).scalar() == 1
        versions = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    assert [v for (v,) in versions] == ["0001"]


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
