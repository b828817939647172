"""The compliance console's retention panel in Chromium: per event kind the period,
how many records' content is past it now and what falls due on which day, with
real records in a real sealed log; the floor and the override reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from appliance.audit.records import AuditEvent
from appliance.audit.wiring import open_audit_log
from appliance.db import create_db_engine, upgrade_database
from appliance.gateway import create_app
from appliance.gateway.services import utc_now
from appliance.identity.apikeys import ApiKeyService
from appliance.keys.deployment import DeploymentSecrets
from appliance.settings.audit import AuditSettings
from tests.support.audit import content_record
from tests.support.fake_vllm import SECRET, FakeState
from tests.support.servers import ServerThread
from tests.ui.harness import DESKTOP, PEPPER, NewContext, screenshot, sign_in, ui_settings

REASON = "Works council agreement 2026-04: requests kept 90 days"


def test_the_auditor_sees_what_will_be_shredded_and_when(
    new_context: NewContext, fake_vllm: tuple[str, FakeState], tmp_path: Path
) -> None:
    settings = ui_settings(tmp_path, fake_vllm[0])
    settings.audit = AuditSettings.model_validate({
        "checkpoint_interval_s": 0.5,
        "retention": {"default_days": 400, "kinds": {"inference.request": 90},
                      "override_reason": REASON},
    })  # fmt: skip
    database = create_db_engine(settings.database_url)
    upgrade_database(database)
    auditor = ApiKeyService(database, PEPPER).create(
        name="carla", owner="carla.compliance", roles=["appliance-auditor"], models=None,
        now=utc_now(),
    ).secret  # fmt: skip
    # Two requests from 100 days ago (past 90 days), one from 60 days ago (due in 30
    # days), and a completion from 100 days ago (due in 300 days, beyond the horizon).
    now = datetime.now(UTC)
    seeding = open_audit_log(settings, database)
    seeding.append_batch([
        content_record(1, event=AuditEvent.REQUEST, recorded_at=now - timedelta(days=100)),
        content_record(2, event=AuditEvent.REQUEST, recorded_at=now - timedelta(days=100)),
        content_record(3, event=AuditEvent.REQUEST, recorded_at=now - timedelta(days=60)),
        content_record(4, event=AuditEvent.COMPLETION, recorded_at=now - timedelta(days=100)),
    ])  # fmt: skip
    due = ((now - timedelta(days=60)).date() + timedelta(days=90)).isoformat()
    app = create_app(
        settings, secrets=DeploymentSecrets(engine_api_key=SECRET, api_key_pepper=PEPPER)
    )
    try:
        with ServerThread(app) as server:
            page = new_context(viewport=DESKTOP).new_page()
            sign_in(page, server.url, auditor, "/ui/console")
            requests = page.locator('#retention-kinds tr[data-event="inference.request"]')
            requests.wait_for()
            cells = requests.locator("td").all_text_contents()
            assert cells == ["inference.request", "90 days", "3", "2", f"{due}: 1"]
            completions = page.locator('#retention-kinds tr[data-event="inference.completion"]')
            assert completions.locator("td").all_text_contents() == [
                "inference.completion", "400 days (default)", "1", "0", "beyond 90 days: 1",
            ]  # fmt: skip
            assert page.text_content("#retention-default") == "400 days"
            assert page.text_content("#retention-floor") == "183 days"
            override = page.text_content("#retention-override") or ""
            assert REASON in override and "inference.request 90 days" in override
            status = page.text_content("#retention-status") or ""
            assert status.startswith("2 record(s) past their period now")
            page.locator("#retention").scroll_into_view_if_needed()
            screenshot(page, "console-retention", tmp_path)
    finally:
        database.dispose()
