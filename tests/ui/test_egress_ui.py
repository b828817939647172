"""The console's egress panel in a real browser: external calls per team and provider,
a line's records, and one of them revealed with a reason through the console's
existing detail panel. In-house calls do not appear."""

from __future__ import annotations

import json
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from appliance.audit.bundle_verifier import verify_bundle
from appliance.audit.wiring import audit_verifier, open_audit_log
from appliance.db import create_db_engine
from tests.support.egress_calls import external_call, inhouse_call
from tests.ui.harness import DESKTOP, NewContext, UiGateway, screenshot, sign_in


def _seed(gateway: UiGateway) -> None:
    engine = create_db_engine(gateway.settings.database_url)
    try:
        log = open_audit_log(gateway.settings, engine)
        at = datetime.now(UTC) - timedelta(minutes=10)
        log.append_batch(
            inhouse_call("in-1", at=at)
            + external_call("pseudonymise", "ex-1", at=at, cost="0.50", detectors={"email": 2})
            + external_call("allow", "ex-2", at=at + timedelta(minutes=1), cost="0.25")
            + external_call("block", "ex-3", team="finance", provider="mistral", at=at)
        )
    finally:
        engine.dispose()


def test_auditor_sees_what_left_and_reveals_what_was_sent(
    new_context: NewContext, gateway: UiGateway, tmp_path: Path
) -> None:
    _seed(gateway)
    page = new_context(viewport=DESKTOP, accept_downloads=True).new_page()
    sign_in(page, gateway.url, gateway.auditor_key, "/ui/console")
    lines = page.locator("#egress-lines tbody tr")
    lines.first.wait_for()
    assert lines.count() == 2  # finance -> mistral, radiology -> openai; no in-house line
    radiology = page.locator('#egress-lines tr[data-team="radiology"][data-provider="openai"]')
    cells = radiology.locator("td").all_text_contents()
    assert cells[2:7] == ["2", "1", "0", "0", "0"]  # left, pseudonymised, routed, blocked, budget
    assert cells[8] == "0.75 EUR" and cells[9] == "email: 2"
    finance = page.locator('#egress-lines tr[data-team="finance"]').locator("td")
    assert finance.nth(5).text_content() == "1"  # blocked
    assert "cost 0.75 EUR" in (page.text_content("#egress-status") or "")

    radiology.get_by_role("button", name="Records of radiology to openai").click()
    page.wait_for_selector("#egress-drill:not([hidden])")
    rows = page.locator("#egress-records tbody tr")
    assert rows.count() == 4  # two calls that left: egress.request + completion each
    events = [rows.nth(i).locator("td").nth(2).text_content() for i in range(4)]
    assert sorted(events) == ["egress.request"] * 2 + ["inference.completion"] * 2

    sent = rows.filter(has_text="egress.request").filter(has_text="pseudonymise")
    sent.get_by_role("button").click()
    page.wait_for_selector("#detail:not([hidden])")
    assert '"verdict": "pseudonymise"' in (page.text_content("#detail-meta") or "")
    page.fill("#reveal-reason", "regulator request 2026-17")
    page.click("#reveal")
    page.wait_for_selector("#reveal-recorded:not([hidden])")
    revealed = page.text_content("#reveal-content") or ""
    assert '"sent"' in revealed and "question ex-1" in revealed
    assert "regulator request 2026-17" in (page.text_content("#reveal-recorded") or "")
    screenshot(page, "console-egress", tmp_path)

    # The regulator's export: the signed bundle of exactly the external calls.
    with page.expect_download() as download:
        page.click("#egress-export")
    bundle = tmp_path / "egress.zip"
    download.value.save_as(bundle)
    assert download.value.suggested_filename.startswith("egress-")
    key = audit_verifier(gateway.settings).verifier_key()
    assert verify_bundle(bundle, key)["records"] == 5  # 2 + 2 + 1; the in-house two are not
    with zipfile.ZipFile(bundle) as archive:
        summary = json.loads(archive.read("egress_summary.json"))
    assert summary["totals"]["left"] == 2 and summary["totals"]["blocked"] == 1
