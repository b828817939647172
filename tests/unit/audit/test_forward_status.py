"""appliance/audit/forward_status.py: the SIEM forwarder's lag, from its cursor row and
the log's size (pure rules, then read from a real store and cursor row)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, create_engine

from appliance.audit.forward_cursor import Cursor, CursorStore, cursor_key
from appliance.audit.forward_status import forward_status, read_forward_status
from appliance.audit.store import SqlAuditStore
from appliance.config import Settings
from tests.support.audit import ORIGIN, build_log, content_record

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def test_off_while_no_siem_is_named() -> None:
    status = forward_status(enabled=False, log_size=40, cursor=None)
    assert (status.state, status.behind) == ("off", 0)
    assert status.as_dict(NOW)["state"] == "off"


def test_behind_counts_records_past_the_cursor() -> None:
    delivered = NOW - timedelta(minutes=7)
    status = forward_status(enabled=True, log_size=40, cursor=Cursor(ORIGIN, 31, None, delivered))
    assert (status.state, status.behind, status.age_s(NOW)) == ("behind", 9, 420.0)
    view = status.as_dict(NOW)
    assert view["behind"] == 9 and view["seconds_since_delivery"] == 420.0
    assert view["delivered_at"] == delivered.isoformat()


def test_up_to_date_and_never_delivered() -> None:
    done = forward_status(enabled=True, log_size=40, cursor=Cursor(ORIGIN, 40, None, NOW))
    assert (done.state, done.behind, done.age_s(NOW)) == ("up_to_date", 0, 0.0)
    never = forward_status(enabled=True, log_size=3, cursor=None)
    assert (never.state, never.behind) == ("behind", 3)
    assert math.isinf(never.age_s(NOW)) and never.as_dict(NOW)["seconds_since_delivery"] is None
    empty = forward_status(enabled=True, log_size=0, cursor=None)
    assert empty.state == "up_to_date"  # nothing to send yet


def test_a_problem_is_an_error_state() -> None:
    status = forward_status(enabled=True, log_size=5, cursor=None, problem="cursor unreadable")
    assert (status.state, status.behind, status.problem) == ("error", 5, "cursor unreadable")


def test_read_from_the_cursor_row_and_the_store(migrated_engine: Engine, tmp_path: Path) -> None:
    log = build_log(migrated_engine)
    log.append_batch([content_record(i) for i in range(6)])
    store = SqlAuditStore(migrated_engine)
    off = Settings(data_dir=tmp_path, audit={"origin": ORIGIN})  # type: ignore[arg-type]
    assert read_forward_status(off, store).state == "off"

    settings = Settings(
        data_dir=tmp_path, audit={"origin": ORIGIN, "forward": {"host": "siem.example"}}
    )  # type: ignore[arg-type]
    first = read_forward_status(settings, store)
    assert (first.state, first.behind, first.delivered_at) == ("behind", 6, None)

    # The row the forwarder moves (no file anywhere: the data directory stays empty).
    cursors = CursorStore(migrated_engine, cursor_key(settings), ORIGIN)
    assert cursor_key(settings) == "siem.example:6514:syslog"
    cursors.claim("forwarder-1", NOW, 60)
    cursors.advance("forwarder-1", 0, Cursor(ORIGIN, 6, b"\x01" * 32, NOW), NOW, 60)
    caught_up = read_forward_status(settings, store)
    assert (caught_up.state, caught_up.behind, caught_up.delivered_at) == ("up_to_date", 0, NOW)
    log.append(content_record(6))
    assert read_forward_status(settings, store).behind == 1
    assert not list(tmp_path.glob("*cursor*"))

    # Another destination has its own row: never delivered there.
    other = settings.model_copy(deep=True)
    other.audit.forward.format = "cef"
    assert read_forward_status(other, store).delivered_at is None


def test_an_unreadable_database_is_an_error_state(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'empty.db'}")  # no tables
    settings = Settings(
        data_dir=tmp_path, audit={"origin": ORIGIN, "forward": {"host": "siem.example"}}
    )  # type: ignore[arg-type]
    status = read_forward_status(settings, SqlAuditStore(engine))
    assert status.state == "error" and "OperationalError" in (status.problem or "")
    engine.dispose()
