"""With Keycloak configured, the sign-in page offers the organisation's sign-in, which
lands on the chat page with the models the person's roles allow."""

from __future__ import annotations

from pathlib import Path

from tests.oidc.provider import KeycloakRealm
from tests.support.fake_vllm import FakeState
from tests.support.oidc_gateway import live_gateway, oidc_settings


def test_keycloak_sign_in_reaches_the_chat(
    browser, tmp_path: Path, fake_vllm: tuple[str, FakeState], oidc_realm: KeycloakRealm
) -> None:
    settings = oidc_settings(tmp_path, fake_vllm[0], oidc_realm)
    with live_gateway(settings) as (base, _app, _audit):
        context = browser.new_context()
        page = context.new_page()
        try:
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
        finally:
            context.close()
