"""Retention by policy through the gateway, on SQLite and PostgreSQL: the console's
endpoint shows what falls due when, `retention apply` drops only the kinds past their
period while verify stays green, and a period below the floor keeps the gateway down
(`appliance serve` says why in one line) unless an override reason is stated, which
the gateway records at start."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from appliance.audit.access import Actor, reveal
from appliance.audit.records import AuditEvent
from appliance.audit.retention import RetentionPolicy
from appliance.audit.retention_store import apply_retention
from appliance.audit.store import SearchFilter, SqlAuditStore
from appliance.audit.verify import verify_log
from appliance.audit.wiring import open_audit_log
from appliance.config import Settings
from appliance.db import create_db_engine
from appliance.errors import ConfigurationError
from appliance.gateway import create_app
from appliance.identity.apikeys import ApiKeyService
from appliance.keys.deployment import DeploymentSecrets
from appliance.settings.audit import AuditSettings
from tests.integration.conftest import PEPPER, migrated_settings, new_key
from tests.support.audit import content_record
from tests.support.fake_vllm import SECRET, FakeState
from tests.support.requests import CHAT, auth, chat_body

AUDITOR = Actor(subject="cli:carol", username="carol")
SECRETS = DeploymentSecrets(engine_api_key=SECRET, api_key_pepper=PEPPER)
REASON = "Hospital rulebook 7.3: chat content at most 30 days"


def with_retention(settings: Settings, **retention: Any) -> Settings:
    settings.audit = AuditSettings.model_validate({"retention": retention})
    return settings


@pytest.fixture
def settings(tmp_path: Path, fake_vllm: tuple[str, FakeState], database_url: str) -> Settings:
    return migrated_settings(tmp_path, fake_vllm[0], database_url)


def keys(settings: Settings) -> ApiKeyService:
    return ApiKeyService(create_db_engine(settings.database_url), PEPPER)


def test_the_console_shows_what_falls_due_and_apply_drops_it_per_kind(settings: Settings) -> None:
    with_retention(settings, default_days=365, kinds={"inference.request": 200})
    engine = create_db_engine(settings.database_url)
    seeding = open_audit_log(settings, engine)
    now = datetime.now(UTC)
    old = now - timedelta(days=300)
    seeding.append_batch([
        content_record(i, event=AuditEvent.REQUEST, recorded_at=old) for i in range(3)
    ] + [content_record(9, event=AuditEvent.COMPLETION, recorded_at=old)])  # fmt: skip
    auditor = auth(new_key(settings, ["appliance-auditor"]))
    user = auth(new_key(settings, ["appliance-user"]))

    with TestClient(create_app(settings, secrets=SECRETS)) as client:
        assert client.post(CHAT, json=chat_body(), headers=user).status_code == 200
        response = client.get("/ui/api/audit/retention", headers=auditor)
        assert response.status_code == 200, response.text
        plan = response.json()
        kinds = {kind["event"]: kind for kind in plan["kinds"]}
        # Three old requests are past 200 days; the chat's own request is not.
        assert (kinds["inference.request"]["due_now"], kinds["inference.request"]["held"]) == (
            3, 4,
        )  # fmt: skip
        completion = kinds["inference.completion"]
        assert (completion["days"], completion["due_now"], completion["held"]) == (365, 0, 2)
        assert completion["upcoming"] == [
            {"date": (old.date() + timedelta(days=365)).isoformat(), "count": 1}
        ]
        assert completion["later"] == 1  # the chat's completion: due in a year
        # Auditors only, refused the OpenAI way.
        refused = client.get("/ui/api/audit/retention", headers=user)
        assert refused.status_code == 403 and refused.json()["error"]["type"] == "permission_error"

        dropped = apply_retention(
            seeding, RetentionPolicy.from_settings(settings.audit.retention), actor=AUDITOR
        )
        assert dropped == {"inference.request": 3}
        after = client.get("/ui/api/audit/retention", headers=auditor).json()
        assert {k["event"]: k["due_now"] for k in after["kinds"]} == {
            "inference.request": 0, "inference.completion": 0,
        }  # fmt: skip

    store = SqlAuditStore(engine)
    statuses = {}
    for event in (AuditEvent.REQUEST, AuditEvent.COMPLETION):
        for stored in store.search(SearchFilter(event=event.value)):
            record = stored.entry.record
            shown = reveal(seeding, record.record_id, actor=AUDITOR, reason="check")
            statuses[(event.value, record.request_id)] = shown.status
    # The old requests' content is gone; the old completion (365 days) and the chat's
    # own request and completion remain.
    assert sorted(statuses.values()) == ["dropped"] * 3 + ["present"] * 3
    assert all(statuses[("inference.request", f"req-{i}")] == "dropped" for i in range(3))
    assert statuses[("inference.completion", "req-9")] == "present"
    seeding.checkpoint()
    report = verify_log(store, seeding.verifier, origin=settings.audit.origin)
    assert report.contents_dropped == 3 and report.uncovered == 0
    engine.dispose()


def test_a_period_below_the_floor_keeps_the_gateway_down(settings: Settings) -> None:
    with_retention(settings, kinds={"inference.completion": 30})
    with pytest.raises(ConfigurationError) as refused:
        with TestClient(create_app(settings, secrets=SECRETS)):
            pass
    assert "audit.retention.kinds.inference.completion = 30 days is below the floor of 183" in (
        refused.value.message
    )


def test_an_override_starts_and_is_recorded_once_per_start(settings: Settings) -> None:
    with_retention(settings, kinds={"inference": 30}, override_reason=REASON)
    for _ in range(2):
        with TestClient(create_app(settings, secrets=SECRETS)) as client:
            assert client.get("/healthz").status_code == 200
    store = SqlAuditStore(create_db_engine(settings.database_url))
    starts = [r for r in store.latest(100) if r.event is AuditEvent.AUDIT_RETENTION]
    assert len(starts) == 2
    assert starts[0].http_method == "START" and starts[0].username == "gateway"
    assert starts[0].params == {
        "retention_override": True, "reason": REASON, "floor_days": 183,
        "below_floor": {"inference": 30},
    }  # fmt: skip


def test_appliance_serve_refuses_in_one_line(tmp_path: Path, settings: Settings) -> None:
    config = tmp_path / "appliance.yaml"
    config.write_text(yaml.safe_dump({
        "data_dir": str(tmp_path / "data"),
        "database": {"url": settings.database_url},
        "engine": {"enabled": False},
        "audit": {"retention": {"default_days": 90}},
    }), encoding="utf-8")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    done = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "serve", "--config", str(config)],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.startswith("error: audit.retention.default_days = 90 days is below the "
                                  "floor of 183 days"), done.stderr  # fmt: skip
