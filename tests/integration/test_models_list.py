"""``GET /v1/models`` says what each model does (``kind``: chat or embedding, from
``gateway.upstreams[].kind``), in OpenAI's Model shape otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from openai.types import Model
from pydantic import ValidationError

from appliance.config import Settings
from appliance.gateway import create_app
from tests.integration.conftest import GatewayHarness, make_settings
from tests.support.fake_vllm import EMBED_MODEL, FakeState
from tests.support.requests import auth


def test_each_model_and_alias_carries_its_kind(
    tmp_path: Path, harness: GatewayHarness, fake_vllm: tuple[str, FakeState]
) -> None:
    url, _state = fake_vllm
    settings = make_settings(
        tmp_path,
        url,
        upstreams=[
            {"model": "fake-model", "url": url},
            {"model": EMBED_MODEL, "url": url, "kind": "embedding"},
            {"model": EMBED_MODEL, "url": url, "kind": "embedding"},  # a second replica
        ],
        routing={"aliases": {"embedder": EMBED_MODEL, "chatter": "fake-model"}},
    )
    settings = settings.model_copy(update={"database": harness.settings.database})
    with TestClient(create_app(settings, secrets=harness.secrets)) as client:
        listed = client.get("/v1/models", headers=auth(harness.user_key)).json()["data"]
    kinds = {entry["id"]: entry["kind"] for entry in listed}
    assert kinds == {
        "fake-model": "chat",
        EMBED_MODEL: "embedding",
        "chatter": "chat",
        "embedder": "embedding",
    }
    for entry in listed:
        Model.model_validate(entry, strict=True)  # OpenAI's shape; kind is an extra key


def test_the_default_is_chat(client, harness) -> None:
    listed = client.get("/v1/models", headers=auth(harness.user_key)).json()["data"]
    assert listed and {entry["kind"] for entry in listed} == {"chat"}


def test_the_local_engines_are_a_chat_and_an_embedding_model(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    chat, embedding = settings.effective_upstreams()
    assert (chat.model, chat.kind) == (settings.engine.served_model_name, "chat")
    assert (embedding.model, embedding.kind) == ("smollm2-135m-embed", "embedding")


def test_replicas_of_one_model_share_a_kind(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="differ in kind"):
        Settings(
            data_dir=tmp_path,
            gateway={
                "upstreams": [
                    {"model": "m", "url": "http://127.0.0.1:1"},
                    {"model": "m", "url": "http://127.0.0.1:2", "kind": "embedding"},
                ]
            },
        )
    with pytest.raises(ValidationError, match="kind"):
        Settings(
            data_dir=tmp_path,
            gateway={"upstreams": [{"model": "m", "url": "http://x:1", "kind": "rerank"}]},
        )
