"""Request shapes the gateway checks before anything reaches an engine.

Only what the gateway relies on is validated strictly; every other field is passed to
vLLM untouched (``extra="allow"``), so new vLLM sampling options need no gateway change.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from appliance.errors import InvalidRequest
from appliance.limits.rules import estimate_tokens

__all__ = [
    "AUDITED_PARAMS",
    "ChatCompletionRequest",
    "CompletionRequest",
    "OpenAIRequest",
    "audited_params",
    "check_token_budget",
    "validate_request",
]


class OpenAIRequest(BaseModel):
    model_config = ConfigDict(extra="allow", strict=False)

    # No control characters: the name is stored in clear in audit metadata (PostgreSQL
    # text refuses NUL) and shown in consoles.
    model: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    n: int | None = Field(default=None, ge=1, le=16)
    seed: int | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str = Field(min_length=1)
    content: str | list[Any] | None = None


class ChatCompletionRequest(OpenAIRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)


class CompletionRequest(OpenAIRequest):
    prompt: str | list[Any] = Field(min_length=1)


# Scalar sampling parameters worth recording; prompt and message text never go to the
# plain audit record (the audit-log issue stores content encrypted).
AUDITED_PARAMS = (
    "stream",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "n",
    "seed",
    "presence_penalty",
    "frequency_penalty",
)


def audited_params(payload: dict[str, Any]) -> dict[str, Any]:
    return {
        key: payload[key]
        for key in AUDITED_PARAMS
        if key in payload and isinstance(payload[key], bool | int | float | str)
    }


def check_token_budget(payload: dict[str, Any], parsed: OpenAIRequest, limit: int) -> None:
    """Refuse a request whose estimated prompt tokens plus answer cap exceed ``limit``
    (``gateway.max_request_tokens``): such a number cannot be a real request, and left
    alone it reaches quota arithmetic and telemetry as an absurd value."""
    cap = getattr(parsed, "max_completion_tokens", None) or parsed.max_tokens or 0
    param = (
        "max_completion_tokens" if getattr(parsed, "max_completion_tokens", None) else "max_tokens"
    )
    if cap > limit:
        raise InvalidRequest(
            f"field {param} exceeds the gateway's limit of {limit} tokens", param=param
        )
    prompt = payload.get("messages", payload.get("prompt", ""))
    if estimate_tokens(len(json.dumps(prompt, ensure_ascii=False)), cap) > limit:
        raise InvalidRequest(
            f"the prompt and {param} together exceed the gateway's limit of {limit} tokens",
            param=param,
        )


def validate_request(model: type[OpenAIRequest], payload: Any) -> OpenAIRequest:
    """Validate or raise InvalidRequest naming the first bad field (never its value)."""
    if not isinstance(payload, dict):
        raise InvalidRequest("request body must be a JSON object")
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(part) for part in first["loc"]) or None
        raise InvalidRequest(f"invalid field {param}: {first['msg']}", param=param) from exc
