"""Request shapes the gateway checks before anything reaches an engine.

Only what the gateway relies on is validated strictly; every other field is passed to
vLLM untouched (``extra="allow"``), so new vLLM sampling options need no gateway change.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from appliance.errors import InvalidRequest
from appliance.limits.rules import estimate_tokens, reservation

__all__ = [
    "AUDITED_PARAMS",
    "ChatCompletionRequest",
    "CompletionRequest",
    "EmbeddingRequest",
    "OpenAIRequest",
    "audited_params",
    "check_embedding_batch",
    "check_token_budget",
    "embedding_input_count",
    "embedding_input_tokens",
    "reserve_tokens",
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


_INPUT_SHAPES = "a string, a list of strings, a list of token ids or a list of token-id lists"


def _token_ids(value: Any) -> bool:
    """A non-empty list of token ids (non-negative integers, never booleans)."""
    return (
        isinstance(value, list)
        and bool(value)
        and all(type(item) is int and item >= 0 for item in value)
    )


def embedding_input_count(value: Any) -> int:
    """How many inputs an embeddings ``input`` holds; ValueError (naming the accepted
    shapes, never the value) unless it is one of them, non-empty throughout."""
    if isinstance(value, str):
        if not value:
            raise ValueError("input must not be empty")
        return 1
    if not isinstance(value, list):
        raise ValueError(f"input must be {_INPUT_SHAPES}")
    if not value:
        raise ValueError("input must not be empty")
    if all(type(item) is int for item in value):
        if not _token_ids(value):
            raise ValueError("token ids in input must be non-negative integers")
        return 1
    if all(isinstance(item, str) for item in value):
        if not all(value):
            raise ValueError("input must not hold an empty string")
        return len(value)
    if all(isinstance(item, list) for item in value):
        if not all(_token_ids(item) for item in value):
            raise ValueError("each token-id list in input must hold non-negative integers")
        return len(value)
    raise ValueError(f"input must be {_INPUT_SHAPES}")


def embedding_input_tokens(value: Any) -> int:
    """Tokens to reserve for an (already validated) embeddings input before the engine
    counts them: a token-id list counts its ids, a string about 4 characters a token."""
    if isinstance(value, str):
        return estimate_tokens(len(value), 0)
    if value and all(type(item) is int for item in value):
        return len(value)
    return sum(embedding_input_tokens(item) for item in value)


class EmbeddingRequest(OpenAIRequest):
    """``POST /v1/embeddings``: ``input`` in one of OpenAI's four shapes. The batch
    size limit is a setting, checked by :func:`check_embedding_batch`."""

    input: Any
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)

    @field_validator("input")
    @classmethod
    def _input_shape(cls, value: Any) -> Any:
        try:
            embedding_input_count(value)
        except ValueError as exc:
            raise PydanticCustomError("embedding_input", str(exc)) from None
        return value

    @field_validator("stream")
    @classmethod
    def _no_stream(cls, value: bool) -> bool:
        if value:
            raise PydanticCustomError("embedding_stream", "embeddings are not streamed")
        return value


def check_embedding_batch(parsed: OpenAIRequest, limit: int) -> None:
    """Refuse an embeddings request with more than ``limit`` inputs
    (``gateway.max_embedding_inputs``); other requests pass."""
    if isinstance(parsed, EmbeddingRequest):
        count = embedding_input_count(parsed.input)
        if count > limit:
            raise InvalidRequest(
                f"input holds {count} items; the gateway's limit is {limit} "
                "(gateway.max_embedding_inputs)",
                param="input",
            )


def reserve_tokens(payload: dict[str, Any], parsed: OpenAIRequest, default_max_tokens: int) -> int:
    """Tokens to reserve before the engine counts them: an embeddings request's input
    tokens (it generates none), else the prompt plus the answer's cap."""
    if isinstance(parsed, EmbeddingRequest):
        return embedding_input_tokens(parsed.input)
    return reservation(payload, default_max_tokens)


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
    if isinstance(parsed, EmbeddingRequest):
        if embedding_input_tokens(parsed.input) > limit:
            raise InvalidRequest(
                f"the input exceeds the gateway's limit of {limit} tokens", param="input"
            )
        return
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
