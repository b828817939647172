"""The browser against the real appliance: an employee chats with the dev model and
sees the answer stream in; the auditor finds that exchange in the console, reveals it
with a reason and sees the reveal in the log."""

from __future__ import annotations

import pytest

from appliance.config import Settings
from appliance.db import create_db_engine
from appliance.gateway.services import utc_now
from appliance.identity.apikeys import ApiKeyService
from appliance.keys.deployment import deployment_secrets
from tests.e2e.conftest import SERVED_NAME, RunningAppliance
from tests.ui.conftest import browser  # noqa: F401  (the Playwright fixture)
from tests.ui.harness import DESKTOP, sign_in

pytestmark = pytest.mark.e2e

_WATCH_STREAM = """() => {
  window.__partials = [];
  new MutationObserver(() => {
    const node = document.querySelector('.msg.assistant.streaming .body');
    if (node && node.textContent) window.__partials.push(node.textContent);
  }).observe(document.getElementById('messages'), {subtree: true, childList: true,
    characterData: true});
}"""


def _keys(appliance: RunningAppliance) -> tuple[str, str]:
    settings = Settings(data_dir=appliance.data_dir)
    engine = create_db_engine(appliance.database_url)
    try:
        service = ApiKeyService(engine, deployment_secrets(settings).api_key_pepper)
        now = utc_now()
        employee = service.create(
            name="ui-e2e", owner="emma.e2e", roles=["appliance-user"], models=None, now=now
        )
        auditor = service.create(
            name="ui-e2e", owner="otto.auditor", roles=["appliance-auditor"], models=None, now=now
        )
        return employee.secret, auditor.secret
    finally:
        engine.dispose()


def test_employee_chats_and_auditor_reveals(
    browser,  # noqa: F811
    appliance: RunningAppliance,
) -> None:
    employee_key, auditor_key = _keys(appliance)
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    try:
        sign_in(page, appliance.url, employee_key)
        page.select_option("#model", SERVED_NAME)
        page.fill("#prompt", "What is the capital of France?")
        # Note every text the answer shows while it is still streaming.
        page.evaluate(_WATCH_STREAM)
        page.click("#send")
        answer = page.locator(".msg.assistant").last
        # Streamed: the answer shows text while the stream is still open.
        answer.locator(".body").filter(has_text="Paris").wait_for(timeout=120_000)
        page.wait_for_selector("#send:not([hidden])", timeout=120_000)
        assert "Paris" in answer.locator(".body").text_content()
        partial = page.evaluate("() => window.__partials")
        assert len(set(partial)) >= 2, partial  # tokens arrived one after another
        # The stream's receipt reached the page: the answer offers it for download.
        receipt = answer.get_by_role("button", name="Download the receipt and proof of this answer")
        assert receipt.count() == 1 and receipt.text_content() == "Receipt"
    finally:
        context.close()

    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    try:
        sign_in(page, appliance.url, auditor_key, "/ui/console")
        page.fill("#f-username", "emma.e2e")
        page.select_option("#f-event", "inference.completion")
        page.click("#search-button")
        row = page.locator("#records tbody tr", has_text="emma.e2e").first
        row.wait_for()
        row.get_by_role("button").click()
        page.fill("#reveal-reason", "e2e: checking the console")
        page.click("#reveal")
        page.wait_for_selector("#reveal-recorded:not([hidden])")
        assert "Paris" in page.text_content("#reveal-content")
        assert "e2e: checking the console" in page.text_content("#reveal-recorded")
        page.fill("#f-username", "otto.auditor")
        page.select_option("#f-event", "audit.read")
        page.click("#search-button")
        page.locator("#records tbody tr", has_text="audit.read").first.wait_for()
    finally:
        context.close()
