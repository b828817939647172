"""The admin page: engine replicas and their health, API keys created and revoked."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.fake_vllm import FakeState
from tests.ui.harness import DESKTOP, PHONE, UiGateway, screenshot, sign_in, ui_gateway


@pytest.fixture
def gateway(tmp_path: Path, fake_vllm: tuple[str, FakeState]):  # type: ignore[no-untyped-def]
    with ui_gateway(tmp_path, fake_vllm[0]) as running:
        yield running


def test_admin_sees_engines_and_manages_keys(browser, gateway: UiGateway, tmp_path: Path) -> None:
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    try:
        sign_in(page, gateway.url, gateway.admin_key, "/ui/admin")
        page.locator("#engines tr", has_text="fake-model").filter(has_text="healthy").wait_for()
        page.locator("#engines tr", has_text="fake-absent").filter(
            has_text="unreachable"
        ).wait_for()
        page.fill("#key-name", "reporting job")
        page.fill("#key-owner", "team-data")
        page.click("#create-key")
        page.wait_for_selector("#new-key:not([hidden])")
        secret = page.text_content("#new-key-secret")
        assert secret is not None and secret.startswith("sk-appl-")
        row = page.locator("#keys tr", has_text="reporting job")
        row.filter(has_text="active").wait_for()
        screenshot(page, "admin-desktop", tmp_path)
        page.once("dialog", lambda d: d.accept())
        row.get_by_role("button", name="Revoke key reporting job").click()
        row.filter(has_text="revoked").wait_for()
        page.set_viewport_size(PHONE)
        screenshot(page, "admin-phone", tmp_path)
    finally:
        context.close()
    # The revoked key no longer signs in.
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(f"{gateway.url}/ui/login")
        page.fill("#api-key", secret)
        page.click("#sign-in")
        assert "not valid" in page.text_content("#login-error")
    finally:
        context.close()
