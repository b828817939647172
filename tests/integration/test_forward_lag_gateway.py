"""The gateway reports the SIEM forwarder's lag (its own process) on /metrics and in
the console's integrity view, from the forwarder's cursor row in the database (no file:
any replica on any host sees it) and the log: off, never delivered, behind N, up to
date."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from appliance.audit.forward_cursor import Cursor, CursorStore, cursor_key
from appliance.audit.store import SqlAuditStore
from appliance.gateway import create_app
from appliance.identity.apikeys import ApiKeyService
from tests.integration.conftest import PEPPER, GatewayHarness
from tests.support.requests import CHAT, auth, chat_body


def scrape(client: TestClient) -> dict[str, str]:
    text = client.get("/metrics").text
    return {
        line.split(" ")[0]: line.split(" ")[1]
        for line in text.splitlines()
        if line.startswith("appliance_audit_forward_")
    }


def integrity(client: TestClient, key: str) -> dict[str, Any]:
    response = client.get("/ui/api/audit/integrity", headers=auth(key))
    assert response.status_code == 200, response.text
    forwarder: dict[str, Any] = response.json()["forwarder"]
    return forwarder


def test_off_by_default(client: TestClient, harness: GatewayHarness) -> None:
    assert scrape(client) == {"appliance_audit_forward_enabled": "0.0"}
    auditor = harness.key(roles=["appliance-auditor"])
    assert integrity(client, auditor)["state"] == "off"


@pytest.fixture
def on_database(
    harness: GatewayHarness, database_url: str, migrated_engine: Engine
) -> GatewayHarness:
    """The harness's gateway, on SQLite or PostgreSQL."""
    database = harness.settings.database.model_copy(update={"url": database_url})
    settings = harness.settings.model_copy(update={"database": database})
    keys = ApiKeyService(migrated_engine, PEPPER)
    moved = replace(harness, settings=settings, keys=keys, store=SqlAuditStore(migrated_engine))
    moved.user_key = moved.key()
    return moved


def test_lag_from_the_cursor_row(on_database: GatewayHarness) -> None:
    harness = on_database
    forward = harness.settings.audit.forward.model_copy(update={"host": "siem.example"})
    audit = harness.settings.audit.model_copy(update={"forward": forward})
    settings = harness.settings.model_copy(update={"audit": audit})
    auditor = harness.key(roles=["appliance-auditor"])
    with TestClient(create_app(settings, secrets=harness.secrets)) as client:
        for _ in range(2):
            assert client.post(CHAT, json=chat_body(), headers=auth(harness.user_key)).is_success
        size = harness.store.size()
        assert size >= 4  # request + completion, twice
        never = scrape(client)
        assert never["appliance_audit_forward_enabled"] == "1.0"
        assert float(never["appliance_audit_forward_behind_records"]) == size
        assert never["appliance_audit_forward_last_delivery_age_seconds"] == "+Inf"
        view = integrity(client, auditor)
        assert (view["state"], view["delivered_at"]) == ("behind", None)

        # The forwarder (another process, maybe another host) moves its row.
        delivered = datetime.now(UTC)
        cursors = CursorStore(harness.store.engine, cursor_key(settings), settings.audit.origin)
        cursors.claim("forwarder-elsewhere", delivered, 60)
        cursors.advance(
            "forwarder-elsewhere", 0, Cursor(settings.audit.origin, size, None, delivered),
            delivered, 60,
        )  # fmt: skip
        assert not list(settings.data_dir.glob("*cursor*"))  # no file involved
        caught_up = scrape(client)
        assert float(caught_up["appliance_audit_forward_behind_records"]) == 0
        assert 0 <= float(caught_up["appliance_audit_forward_last_delivery_age_seconds"]) < 60
        view = integrity(client, auditor)
        assert view["state"] == "up_to_date" and view["behind"] == 0
        assert view["delivered_at"] == delivered.isoformat()
        # New traffic puts the forwarder behind again until it delivers.
        assert client.post(CHAT, json=chat_body(), headers=auth(harness.user_key)).is_success
        assert integrity(client, auditor)["behind"] == harness.store.size() - size >= 2
