"""Small builders for OpenAI-shaped test requests."""

from __future__ import annotations

CHAT = "/v1/chat/completions"


def chat_body(model: str = "fake-model", **extra: object) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
