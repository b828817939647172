"""The chat page against the fake engine: API-key sign-in, streamed answers, escaped
Markdown, reasoning, stop, friendly errors, conversations kept encrypted on the server."""

from __future__ import annotations

from pathlib import Path

from tests.ui.harness import DESKTOP, PHONE, NewContext, UiGateway, screenshot, sign_in


def test_sign_in_with_api_key_and_chat(
    new_context: NewContext, gateway: UiGateway, tmp_path: Path
) -> None:
    context = new_context(viewport=DESKTOP)
    page = context.new_page()
    alerts: list[str] = []
    page.on("dialog", lambda d: (alerts.append(d.message), d.dismiss()))
    page.goto(f"{gateway.url}/")
    page.wait_for_url("**/ui/login**")
    page.fill("#api-key", "sk-appl-wrong")
    page.click("#sign-in")
    assert "not valid" in page.text_content("#login-error")
    sign_in(page, gateway.url, gateway.user_key)
    cookie = next(c for c in context.cookies() if c["name"] == "appliance_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    options = page.eval_on_selector_all("#model option", "els => els.map(e => e.value)")
    assert "fake-model" in options and "fake-xss" in options

    page.select_option("#model", "fake-model")
    page.fill("#prompt", "What is the capital of France?")
    page.keyboard.press("Enter")
    answer = page.locator(".msg.assistant .body").last
    answer.filter(has_text="The capital of France is Paris.").wait_for()
    page.locator(".conv").first.wait_for()
    assert "What is the capital" in page.text_content(".conv")

    # Model output is text, never markup.
    page.select_option("#model", "fake-xss")
    page.fill("#prompt", "Show me some HTML")
    page.click("#send")
    xss = page.locator(".msg.assistant").last
    xss.locator("pre.code").wait_for()
    page.wait_for_selector("#send:not([hidden])")
    assert "<script>alert(1)</script>" in xss.locator(".body").text_content()
    assert xss.locator("script").count() == 0
    assert xss.locator("strong").text_content() == "bold"
    assert "print('<b>hi</b>')" in xss.locator("pre.code").text_content()
    assert alerts == []

    # DeepSeek-R1 reasoning arrives in its own collapsible block.
    page.select_option("#model", "fake-reasoning")
    page.fill("#prompt", "Think first")
    page.click("#send")
    thought = page.locator(".msg.assistant").last
    thought.locator(".body").filter(has_text="Paris").wait_for()
    details = thought.locator("details.reasoning")
    assert details.is_visible() and details.get_attribute("open") is None
    details.locator("summary").click()
    assert "its capital is Paris" in details.locator(".reasoning-text").text_content()
    screenshot(page, "chat-desktop", tmp_path)

    # The conversation is kept on the server: a reload brings it back.
    page.reload()
    page.locator(".msg.assistant").nth(2).wait_for()
    assert page.locator(".msg.user").count() == 3
    context.set_default_timeout(10_000)
    page.set_viewport_size(PHONE)
    screenshot(page, "chat-phone", tmp_path)


def test_stop_and_errors(new_context: NewContext, gateway: UiGateway) -> None:
    context = new_context(viewport=DESKTOP)
    page = context.new_page()
    sign_in(page, gateway.url, gateway.user_key)
    page.select_option("#model", "fake-slow")
    page.fill("#prompt", "Tell me a long story")
    page.click("#send")
    page.locator(".msg.assistant .body").filter(has_text="tick").wait_for()
    page.click("#stop")
    page.locator(".msg.assistant .who").filter(has_text="(stopped)").wait_for()
    assert page.is_visible("#send")

    # An engine that is down: a message a person understands.
    page.evaluate(
        "() => { const o = document.createElement('option'); o.value = 'fake-absent';"
        " o.textContent = 'fake-absent'; document.getElementById('model').append(o); }"
    )
    page.select_option("#model", "fake-absent")
    page.fill("#prompt", "hello?")
    page.click("#send")
    page.wait_for_selector("#chat-error:not([hidden])")
    assert "unavailable" in page.text_content("#chat-error")
    assert page.input_value("#prompt") == "hello?"

    # Session gone (signed out elsewhere): say so and offer to sign in again.
    context.clear_cookies()
    page.select_option("#model", "fake-model")
    page.click("#send")
    page.wait_for_selector("#chat-error a")
    assert "session has expired" in page.text_content("#chat-error")


def test_rename_and_delete_conversation(new_context: NewContext, gateway: UiGateway) -> None:
    context = new_context(viewport=DESKTOP)
    page = context.new_page()
    sign_in(page, gateway.url, gateway.user_key)
    page.fill("#prompt", "first question")
    page.click("#send")
    page.locator(".conv").first.wait_for()
    page.wait_for_selector("#send:not([hidden])")
    page.once("dialog", lambda d: d.accept("Renamed chat"))
    page.click("#rename")
    page.locator(".conv", has_text="Renamed chat").wait_for()
    assert page.text_content("#chat-title") == "Renamed chat"
    page.once("dialog", lambda d: d.accept())
    page.click("#delete")
    from playwright.sync_api import expect

    expect(page.locator(".conv")).to_have_count(0)
