"""The chat page offers chat models only: an embedding model (``kind: embedding``) is
served by the API but cannot answer a chat, so it is not in the page's model list."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

from appliance.gateway import create_app
from tests.integration.conftest import GatewayHarness, make_settings
from tests.integration.identity.test_key_sessions import ui_sign_in
from tests.support.fake_vllm import EMBED_MODEL, FakeState


def test_chat_page_lists_chat_models_only(
    tmp_path: Path, harness: GatewayHarness, fake_vllm: tuple[str, FakeState]
) -> None:
    url, _state = fake_vllm
    settings = make_settings(
        tmp_path,
        url,
        upstreams=[
            {"model": EMBED_MODEL, "url": url, "kind": "embedding"},
            {"model": "fake-model", "url": url},
        ],
    )
    settings = settings.model_copy(update={"database": harness.settings.database})
    with TestClient(create_app(settings, secrets=harness.secrets)) as browser:
        ui_sign_in(browser, harness.user_key)
        page = browser.get("/ui/chat").text
    assert re.findall(r'<option value="([^"]+)"', page) == ["fake-model"]
