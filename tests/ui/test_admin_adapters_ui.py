"""The admin page's adapters: listed with base, rank, teams and manifest hash, and
loaded into / unloaded from the (fake) engine with the page's buttons."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.adapters import import_adapter
from tests.support.fake_adapters import write_adapter, write_base
from tests.support.fake_vllm import FakeState
from tests.ui.harness import DESKTOP, NewContext, UiGateway, screenshot, sign_in

LEGAL = "fake-model:legal-v1"


@pytest.fixture
def engine(fake_vllm: tuple[str, FakeState]) -> Iterator[FakeState]:
    """The fake engine with runtime LoRA routes on and nothing loaded yet."""
    state = fake_vllm[1]
    state.loras, state.lora_calls = {}, []
    try:
        yield state
    finally:
        state.loras = None


def test_admin_loads_and_unloads_an_adapter(
    new_context: NewContext, gateway: UiGateway, engine: FakeState, tmp_path: Path
) -> None:
    # Imported while the gateway runs: the page lists it without a restart.
    store = gateway.settings.model_store
    write_base(store, "fake-model")
    source = write_adapter(tmp_path / "src")
    stored = import_adapter(
        source, store, "legal-v1", base="fake-model", teams=["legal", "compliance"],
        trust_source=True,
    ).adapter  # fmt: skip
    page = new_context(viewport=DESKTOP).new_page()
    sign_in(page, gateway.url, gateway.admin_key, "/ui/admin")
    row = page.locator(f'#adapters tr[data-adapter="{LEGAL}"]')
    row.filter(has_text="not loaded").wait_for()
    text = row.text_content() or ""
    assert "legal, compliance" in text and stored.manifest_sha256[:12] in text
    assert "fake-model" in text and "8" in text

    row.get_by_role("button", name=f"Load adapter {LEGAL}", exact=True).click()
    row.get_by_role("button", name=f"Unload adapter {LEGAL}", exact=True).wait_for()
    assert row.locator("td.ok").text_content() == "loaded"
    path = str(stored.path.resolve())
    assert engine.lora_calls == [("load", {"lora_name": LEGAL, "lora_path": path})]
    screenshot(page, "admin-adapters", tmp_path)

    page.once("dialog", lambda d: d.accept())
    row.get_by_role("button", name=f"Unload adapter {LEGAL}", exact=True).click()
    row.get_by_role("button", name=f"Load adapter {LEGAL}", exact=True).wait_for()
    assert "not loaded" in (row.text_content() or "")
    assert engine.lora_calls[-1] == ("unload", {"lora_name": LEGAL})
    assert page.locator("#adapter-error").is_hidden()

    # An engine that refuses: the admin reads the gateway's message, not a stack trace.
    engine.loras = None
    row.get_by_role("button", name=f"Load adapter {LEGAL}", exact=True).click()
    page.locator("#adapter-error:not([hidden])").wait_for()
    assert "LoRA enabled" in (page.text_content("#adapter-error") or "")
