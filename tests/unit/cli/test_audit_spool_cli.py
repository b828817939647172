"""`appliance audit verify` reports records still spooled, and fails on records the
drainer could not seal."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from appliance.audit.spool import Spool, encode_record
from appliance.audit.wiring import open_audit_log
from appliance.cli import app
from appliance.config import load_settings
from appliance.db import create_db_engine, upgrade_database
from tests.support.audit import content_record


def test_verify_counts_spooled_records_and_fails_on_unsealable_ones(tmp_path: Path) -> None:
    config = tmp_path / "appliance.yaml"
    spool_dir = tmp_path / "spool"
    config.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(tmp_path / "data"),
                "audit": {"spool": {"enabled": True, "directory": str(spool_dir)}},
            }
        )
    )
    settings = load_settings(config)
    engine = create_db_engine(settings.database_url)
    upgrade_database(engine)
    log = open_audit_log(settings, engine)
    records = [content_record(i) for i in range(5)]
    log.append_batch(records[:2])  # sealed; the spool still holds them (a crash)
    spool = Spool(spool_dir)
    spool.open()
    spool.append([encode_record(r) for r in records])
    runner = CliRunner()

    def verify():  # type: ignore[no-untyped-def]
        return runner.invoke(app, ["audit", "verify", "--config", str(config)])

    result = verify()
    assert result.exit_code == 0, result.output
    assert "OK: 2 records" in result.output
    assert "3 records are spooled" in result.output and str(spool_dir) in result.output

    spool.quarantine([encode_record(content_record(9))])
    result = verify()
    assert result.exit_code == 1
    assert "1 spooled records could not be sealed" in result.output
    spool.close()
    engine.dispose()
