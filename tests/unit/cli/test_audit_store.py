"""The audit store a command opens from its configuration."""

from __future__ import annotations

from pathlib import Path

import yaml

from appliance.cli.audit_store import audit_store
from appliance.db import create_db_engine
from appliance.db.migrate import upgrade_database


def test_opens_the_configured_database_and_closes_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'appliance.db'}"
    upgrade_database(create_db_engine(url))
    config = tmp_path / "appliance.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path), "database": {"url": url}}))
    with audit_store(config) as (settings, store):
        assert settings.database_url == url
        assert store.size() == 0
