"""appliance/audit/forward_cursor.py: the SIEM forwarder's cursor row, on SQLite and
PostgreSQL: one row per destination, a lease that keeps a second forwarder out, the
cursor moving only for its holder, and the one-time import of an old cursor file."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from appliance.audit.forward_cursor import (
    Cursor,
    CursorStore,
    cursor_key,
    legacy_cursor_path,
    load_cursor_file,
)
from appliance.audit.forward_transport import ForwardError
from appliance.config import Settings
from appliance.errors import ConfigurationError
from tests.support.audit import ORIGIN

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
LEAF = bytes(range(32))


def store(engine: Engine, key: str = "siem.example:6514:cef") -> CursorStore:
    return CursorStore(engine, key, ORIGIN)


def test_key_names_the_destination_and_format(tmp_path: Path) -> None:
    def settings(**forward: object) -> Settings:
        return Settings(data_dir=tmp_path, audit={"forward": {"host": "siem", **forward}})  # type: ignore[arg-type]

    assert cursor_key(settings()) == "siem:6514:syslog"
    assert cursor_key(settings(transport="udp", format="ocsf")) == "siem:514:ocsf"
    assert cursor_key(settings(port=10514, format="cef")) == "siem:10514:cef"
    assert legacy_cursor_path(settings()) == tmp_path / "audit_forward_cursor.json"
    assert legacy_cursor_path(settings(cursor_file="/old/c.json")) == Path("/old/c.json")


def test_a_new_destination_starts_at_zero_and_the_cursor_survives(
    migrated_engine: Engine,
) -> None:
    cursors = store(migrated_engine)
    assert cursors.load() is None
    claim = cursors.claim("a", NOW, 60)
    assert claim.cursor == Cursor(ORIGIN) and claim.imported_from is None
    cursors.advance("a", 0, Cursor(ORIGIN, 7, LEAF, NOW), NOW, 60)
    cursors.release("a")
    # Another process (a restart) reads and claims the same row.
    again = store(migrated_engine)
    assert again.load() == Cursor(ORIGIN, 7, LEAF, NOW)
    assert again.claim("b", NOW + timedelta(seconds=1), 60).cursor.next_index == 7
    assert store(migrated_engine, "other:6514:cef").load() is None  # its own row


def test_the_lease_keeps_a_second_forwarder_out(migrated_engine: Engine) -> None:
    cursors = store(migrated_engine)
    cursors.claim("a", NOW, 60)
    with pytest.raises(ForwardError, match=r"another forwarder \(a\) holds the cursor"):
        cursors.claim("b", NOW + timedelta(seconds=59), 60)
    # Nor may it move the cursor, even where it read the right index.
    with pytest.raises(ForwardError, match="taken over by another forwarder"):
        cursors.advance("b", 0, Cursor(ORIGIN, 3), NOW, 60)
    cursors.claim("a", NOW + timedelta(seconds=30), 60)  # renewed: until NOW + 90 s
    with pytest.raises(ForwardError):
        cursors.claim("b", NOW + timedelta(seconds=80), 60)
    # A crashed holder's lease runs out; released, it is free at once.
    assert cursors.claim("b", NOW + timedelta(seconds=91), 60).cursor.next_index == 0
    cursors.release("b")
    cursors.claim("c", NOW + timedelta(seconds=92), 60)


def test_the_cursor_moves_only_from_where_it_was_read(migrated_engine: Engine) -> None:
    cursors = store(migrated_engine)
    cursors.claim("a", NOW, 60)
    cursors.advance("a", 0, Cursor(ORIGIN, 5, LEAF, NOW), NOW, 60)
    with pytest.raises(ForwardError, match="records 0-7 may arrive twice"):
        cursors.advance("a", 0, Cursor(ORIGIN, 8, LEAF, NOW), NOW, 60)
    assert cursors.load() == Cursor(ORIGIN, 5, LEAF, NOW)


def test_an_old_cursor_file_is_imported_into_an_empty_table_only(
    migrated_engine: Engine, tmp_path: Path
) -> None:
    old = tmp_path / "audit_forward_cursor.json"
    content = json.dumps(
        {
            "version": 1, "origin": ORIGIN, "next_index": 42, "last_leaf_hash": LEAF.hex(),
            "delivered_at": "2026-01-05T09:00:00.000000Z",
        }
    )  # fmt: skip
    old.write_text(content)
    claim = store(migrated_engine).claim("a", NOW, 60, old)
    assert claim.imported_from == old
    assert claim.cursor == Cursor(ORIGIN, 42, LEAF, NOW)
    assert store(migrated_engine).load() == Cursor(ORIGIN, 42, LEAF, NOW)
    assert old.read_text() == content  # left as it was
    # Once: neither the same destination again nor a new one takes it.
    assert store(migrated_engine).claim("a", NOW, 60, old).imported_from is None
    other = store(migrated_engine, "siem.example:6514:ocsf").claim("a", NOW, 60, old)
    assert (other.imported_from, other.cursor.next_index) == (None, 0)


def test_a_missing_or_bad_old_file(migrated_engine: Engine, tmp_path: Path) -> None:
    old = tmp_path / "audit_forward_cursor.json"
    assert load_cursor_file(old, ORIGIN) is None
    assert store(migrated_engine).claim("a", NOW, 60, old).cursor.next_index == 0
    old.write_text("[1, 2]")
    with pytest.raises(ConfigurationError, match="is unreadable"):
        load_cursor_file(old, ORIGIN)
    old.write_text(json.dumps({"origin": "other.example/log", "next_index": 3}))
    with pytest.raises(ConfigurationError, match=r"belongs to the log 'other\.example/log'"):
        load_cursor_file(old, ORIGIN)
    old.write_text(json.dumps({"origin": ORIGIN, "next_index": 3}))
    assert load_cursor_file(old, ORIGIN) == Cursor(ORIGIN, 3)  # older files: no time, no hash
