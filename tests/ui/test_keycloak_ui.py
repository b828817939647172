"""With Keycloak configured, the sign-in page offers the organisation's sign-in, which
lands on the chat page with the models the person's roles allow."""

from __future__ import annotations

from tests.ui.harness import NewContext


def test_keycloak_sign_in_reaches_the_chat(oidc_gateway: str, new_context: NewContext) -> None:
    base = oidc_gateway
    page = new_context().new_page()
    page.goto(f"{base}/ui/chat")
    page.wait_for_url("**/ui/login**")
    page.click("#keycloak-login")
    page.fill("#username", "alice")
    page.fill("#password", "alice-pass")
    page.click("#kc-login")
    page.wait_for_url(f"{base}/ui/chat")
    assert "alice" in page.text_content("#signed-in-as")
    options = page.eval_on_selector_all("#model option", "els => els.map(e => e.value)")
    assert "fake-model" in options
    assert page.get_attribute("form.signout", "action") == "/auth/logout"
    page.click("#sign-out")
    page.wait_for_url("**/protocol/openid-connect/logout**")
