"""The admin page: engine replicas and their health, API keys created and revoked."""

from __future__ import annotations

from pathlib import Path

from tests.ui.harness import DESKTOP, PHONE, NewContext, UiGateway, screenshot, sign_in


def test_admin_sees_engines_and_manages_keys(
    new_context: NewContext, gateway: UiGateway, tmp_path: Path
) -> None:
    context = new_context(viewport=DESKTOP)
    page = context.new_page()
    sign_in(page, gateway.url, gateway.admin_key, "/ui/admin")
    page.locator("#engines tr", has_text="fake-model").filter(has_text="healthy").wait_for()
    page.locator("#engines tr", has_text="fake-absent").filter(has_text="unreachable").wait_for()
    # One row per replica, not per model: the live and the dead replica of fake-pooled.
    pooled = page.locator("#engines tbody tr", has_text="fake-pooled")
    assert pooled.count() == 2
    assert pooled.filter(has_text="healthy").count() == 1
    assert pooled.filter(has_text="unreachable").count() == 1
    assert "closed" in (pooled.first.text_content() or "")  # the router's view: the circuit
    page.fill("#key-name", "reporting job")
    page.fill("#key-owner", "team-data")
    page.click("#create-key")
    page.wait_for_selector("#new-key:not([hidden])")
    secret = page.text_content("#new-key-secret")
    assert secret is not None and secret.startswith("sk-appl-")
    row = page.locator("#keys tr", has_text="reporting job")
    row.filter(has_text="active").wait_for()
    screenshot(page, "admin-desktop", tmp_path)
    # The admin's own key is marked, with nothing to revoke: that would lock them out.
    own = page.locator("#keys tbody tr", has_text="your key")
    assert own.count() == 1 and own.get_by_role("button").count() == 0
    # Someone is chatting in a browser with the new key when the admin revokes it.
    user = new_context().new_page()
    sign_in(user, gateway.url, secret, "/ui/chat")
    page.once("dialog", lambda d: d.accept())
    row.get_by_role("button", name="Revoke key reporting job").click()
    row.filter(has_text="revoked").wait_for()
    assert page.locator("#new-key").is_hidden()  # no revoked secret left on screen
    assert page.text_content("#new-key-secret") == ""
    user.goto(f"{gateway.url}/ui/chat")  # that browser session ended with the key
    assert "/ui/login" in user.url
    page.set_viewport_size(PHONE)
    screenshot(page, "admin-phone", tmp_path)
    # The revoked key no longer signs in.
    context = new_context()
    page = context.new_page()
    page.goto(f"{gateway.url}/ui/login")
    page.fill("#api-key", secret)
    page.click("#sign-in")
    assert "not valid" in page.text_content("#login-error")
