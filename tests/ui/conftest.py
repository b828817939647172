"""Browser tests: Debian's chromium driven by Playwright; never a downloaded browser.

Fixtures: ``browser`` (one chromium per module), ``new_context`` (browser contexts,
closed after the test), ``gateway`` (a live gateway with API keys, ``harness.py``) and
``oidc_gateway`` (a live gateway signing people in through the test Keycloak realm).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import fake_vllm
from tests.oidc.fixtures import oidc_realm
from tests.oidc.provider import KeycloakRealm
from tests.support.fake_vllm import FakeState
from tests.support.oidc_gateway import live_gateway, oidc_settings
from tests.ui.harness import NewContext, UiGateway, ui_gateway

__all__ = ["browser", "fake_vllm", "gateway", "new_context", "oidc_gateway", "oidc_realm"]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Module-scoped: Playwright's sync API keeps an event loop running in this thread
    until it stops, which would break later tests that call asyncio.run()."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the python playwright package is not installed (make install)")
    if not CHROMIUM.exists() and shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def new_context(browser: Any) -> Iterator[NewContext]:
    """``new_context(**options)``: a fresh browser context (own cookies), as Playwright's
    ``browser.new_context``; every one still open is closed after the test."""
    opened: list[Any] = []

    def make(**options: Any) -> Any:
        context = browser.new_context(**options)
        opened.append(context)
        return context

    yield make
    for context in reversed(opened):
        context.close()  # closing a closed context is a no-op


@pytest.fixture
def gateway(tmp_path: Path, fake_vllm: tuple[str, FakeState]) -> Iterator[UiGateway]:
    """A live gateway with API keys for an employee, an auditor and an admin."""
    with ui_gateway(tmp_path, fake_vllm[0]) as running:
        yield running


@pytest.fixture
def oidc_gateway(
    tmp_path: Path, fake_vllm: tuple[str, FakeState], oidc_realm: KeycloakRealm
) -> Iterator[str]:
    """The base URL of a live gateway whose people sign in through the test realm."""
    with live_gateway(oidc_settings(tmp_path, fake_vllm[0], oidc_realm)) as (base, _app, _audit):
        yield base
