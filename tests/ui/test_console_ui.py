"""The compliance console: find an employee's chat, reveal it with a reason (and see
the reveal recorded), verify, export a bundle that verifies, usage charts, erase a
subject (their chats become unreadable too). Ordinary users get 403."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx

from appliance.audit.bundle_verifier import verify_bundle
from tests.ui.harness import DESKTOP, PHONE, NewContext, UiGateway, screenshot, sign_in


def _employee_chats(new_context: NewContext, gateway: UiGateway) -> None:
    context = new_context(viewport=DESKTOP)
    page = context.new_page()
    sign_in(page, gateway.url, gateway.user_key)
    page.select_option("#model", "fake-model")
    page.fill("#prompt", "Where is the Eiffel tower?")
    page.click("#send")
    page.locator(".msg.assistant .body").filter(has_text="Paris").wait_for()
    page.locator(".conv").first.wait_for()


def test_auditor_finds_reveals_verifies_exports_and_erases(
    new_context: NewContext, gateway: UiGateway, tmp_path: Path
) -> None:
    _employee_chats(new_context, gateway)
    context = new_context(viewport=DESKTOP, accept_downloads=True)
    page = context.new_page()
    sign_in(page, gateway.url, gateway.auditor_key, "/ui/console")
    # The Integrity panel shows the SIEM forwarder's state (off: audit.forward unset).
    page.locator("#forward-state", has_text="off (audit.forward is not set)").wait_for()
    page.fill("#f-username", "erin.employee")
    page.select_option("#f-event", "inference.request")
    page.click("#search-button")
    row = page.locator("#records tbody tr").first
    row.filter(has_text="erin.employee").wait_for()
    assert page.locator("#records tbody tr").count() == 1
    row.get_by_role("button").click()
    page.wait_for_selector("#detail:not([hidden])")
    subject = page.text_content("#detail-meta")
    assert '"username": "erin.employee"' in subject

    # Reveal needs a typed reason; the browser refuses an empty one.
    page.click("#reveal")
    assert page.is_hidden("#reveal-content")
    page.fill("#reveal-reason", "case 2025-114: HR request")
    page.click("#reveal")
    page.wait_for_selector("#reveal-recorded:not([hidden])")
    assert "Where is the Eiffel tower?" in page.text_content("#reveal-content")
    recorded = page.text_content("#reveal-recorded")
    assert "recorded in the audit log" in recorded and "case 2025-114" in recorded

    # ... and the reveal is in the log for the next auditor to see.
    page.fill("#f-username", "carla.compliance")
    page.select_option("#f-event", "audit.read")
    page.click("#search-button")
    page.locator("#records tbody tr", has_text="audit.read").first.wait_for()

    page.click("#verify-now")
    page.locator("#verify-result", has_text="Verified").wait_for()
    assert page.text_content("#verify-time").endswith(" s)")
    page.locator("#cp-size", has_text="records").wait_for()

    page.locator("#chart-req-team svg").wait_for()
    assert page.locator("#chart-req-model rect").count() >= 1
    page.locator("#chart-req-adapter li", has_text="(no adapter)").wait_for()  # the split
    page.fill("#f-username", "")
    page.select_option("#f-event", "")
    page.click("#search-button")
    page.locator("#records tbody tr").first.wait_for()
    screenshot(page, "console-desktop", tmp_path)

    today = datetime.now(UTC).date().isoformat()
    page.fill("#export-since", today)
    page.fill("#export-until", today)
    with page.expect_download() as download:
        page.click("#export")
    bundle = tmp_path / "bundle.zip"
    download.value.save_as(bundle)
    checked = verify_bundle(bundle)
    assert checked["records"] >= 4

    # Erase the employee: typed confirmation, then their chats are unreadable too.
    employee = next(
        line.split('"')[3] for line in subject.splitlines() if line.strip().startswith('"subject"')
    )
    page.fill("#shred-subject", employee)
    page.fill("#shred-reason", "erasure request 77")
    page.fill("#shred-confirm", "not the same")
    page.click("#shred")
    page.locator("#shred-status", has_text="does not match").wait_for()
    page.fill("#shred-confirm", employee)
    page.click("#shred")
    page.locator("#shred-status", has_text="key(s) destroyed").wait_for()
    page.set_viewport_size(PHONE)
    screenshot(page, "console-phone", tmp_path)

    chats = new_context(viewport=DESKTOP)
    page = chats.new_page()
    sign_in(page, gateway.url, gateway.user_key)
    page.locator(".conv", has_text="(erased conversation)").wait_for()


def test_ordinary_user_gets_403_on_console_and_admin(
    new_context: NewContext, gateway: UiGateway
) -> None:
    context = new_context()
    page = context.new_page()
    sign_in(page, gateway.url, gateway.user_key)
    for path in ("/ui/console", "/ui/admin"):
        response = page.goto(f"{gateway.url}{path}")
        assert response is not None and response.status == 403
        assert page.text_content("#forbidden") == "Not allowed"
    assert page.locator("nav a", has_text="Compliance").count() == 0
    cookies = {c["name"]: c["value"] for c in context.cookies()}
    with httpx.Client(base_url=gateway.url, cookies=cookies) as client:
        assert client.get("/ui/api/audit/integrity").status_code == 403
        assert client.get("/audit/records").status_code == 403
        assert client.get("/ui/api/admin/engines").status_code == 403
        # Unsafe methods need the CSRF token even with a valid cookie.
        assert client.post("/ui/api/conversations", json={}).status_code == 403
