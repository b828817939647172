"""A person signs in through the identity provider's login page and signs out again."""

from __future__ import annotations

from tests.ui.harness import NewContext


def test_sign_in_reach_the_page_and_sign_out(oidc_gateway: str, new_context: NewContext) -> None:
    base = oidc_gateway
    context = new_context()
    page = context.new_page()
    page.goto(f"{base}/")
    # The provider's login page (Keycloak's form ids).
    assert "/login-actions/" in page.url
    page.fill("#username", "alice")
    page.fill("#password", "wrong")
    page.click("#kc-login")
    assert "Invalid username or password" in page.text_content("body")
    page.fill("#username", "alice")
    page.fill("#password", "alice-pass")
    page.click("#kc-login")
    page.wait_for_url(f"{base}/")
    assert page.text_content("#signed-in-as") == "Signed in as alice"
    assert "appliance-user" in page.text_content("#roles")
    cookie = next(c for c in context.cookies() if c["name"] == "appliance_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"

    page.click("#sign-out")
    # Keycloak (and oidc-provider) ask to confirm the sign-out.
    page.wait_for_url("**/protocol/openid-connect/logout**")
    assert "Do you want to log out?" in page.text_content("body"), page.content()
    page.click("#kc-logout")
    page.wait_for_url(f"{base}/auth/logged-out")
    assert page.text_content("#signed-out") == "You are signed out."
    assert not any(c["name"] == "appliance_session" for c in context.cookies())

    # Signed out at the provider too: the next visit asks for the password again.
    page.goto(f"{base}/")
    assert "/login-actions/" in page.url
