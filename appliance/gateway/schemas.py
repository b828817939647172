"""Request shapes the gateway checks before anything reaches an engine.

Only what the gateway relies on is validated strictly; every other field is passed to
vLLM untouched (``extra="allow"``), so new vLLM sampling options need no gateway change.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from appliance.errors import InvalidRequest
from appliance.limits.rules import estimate_tokens, reservation

__all__ = [
    "AUDITED_PARAMS",
    "REMOVED_GUIDED_FIELDS",
    "ChatCompletionRequest",
    "CompletionRequest",
    "EmbeddingRequest",
    "OpenAIRequest",
    "RerankRequest",
    "ResponseRequest",
    "ScoreRequest",
    "ScoringRequest",
    "audited_params",
    "check_embedding_batch",
    "check_removed_fields",
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


class ResponseRequest(OpenAIRequest):
    """``POST /v1/responses``. ``store`` and ``previous_response_id`` are the gateway's
    (the engine is always sent ``store: false``, see :mod:`appliance.gateway.responses`);
    ``background`` needs the engine's own store, which the gateway never exposes."""

    input: str | list[Any] = Field(min_length=1)
    instructions: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    store: bool = True
    # A response id the gateway minted (``resp_`` + 24 hex + ``_`` + a request id).
    previous_response_id: str | None = Field(default=None, min_length=1, max_length=100)
    background: bool | None = None

    @field_validator("background")
    @classmethod
    def _no_background(cls, value: bool | None) -> bool | None:
        if value:
            raise PydanticCustomError(
                "responses_background",
                "background responses are not offered: they need the engine's own response "
                "store, which the gateway does not expose; send the request without it",
            )
        return value


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


_Text = Annotated[str, Field(min_length=1)]


class ScoringRequest(OpenAIRequest):
    """What ``/v1/rerank`` and ``/v1/score`` share: ``documents``, non-empty strings
    (text only: the gateway seals and counts text, not images); never streamed.
    Other vLLM scoring fields (``instruction``, ``max_tokens_per_doc`` ...) pass through."""

    documents: list[_Text] = Field(min_length=1)

    @field_validator("stream")
    @classmethod
    def _no_stream(cls, value: bool) -> bool:
        if value:
            raise PydanticCustomError("scoring_stream", "rerank and score are not streamed")
        return value

    def queries_list(self) -> list[str]:
        raise NotImplementedError

    def input_tokens(self) -> int:
        """Tokens to reserve: each query once per document (a cross-encoder reads every
        pair) plus the documents, about 4 characters a token."""
        queries = self.queries_list()
        pairs = len(self.documents) if len(queries) == 1 else 1
        chars = sum(len(query) for query in queries) * pairs + sum(map(len, self.documents))
        return estimate_tokens(chars, 0)


class RerankRequest(ScoringRequest):
    """``POST /v1/rerank`` (Jina/Cohere shape, as vLLM serves it): ``documents`` ranked
    by relevance to ``query``; ``top_n`` keeps the best n (0, the default: all)."""

    query: _Text
    top_n: int = Field(default=0, ge=0)

    def queries_list(self) -> list[str]:
        return [self.query]


class ScoreRequest(ScoringRequest):
    """``POST /v1/score`` (vLLM's): a score for each (query, document) pair; one query
    against n documents, or n queries against n documents pairwise."""

    queries: str | list[str]

    @field_validator("queries", mode="before")
    @classmethod
    def _pairs(cls, value: Any, info: ValidationInfo) -> Any:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(i, str) and i for i in items):
            raise PydanticCustomError(
                "score_queries", "queries must be a non-empty string or a list of them"
            )
        documents = info.data.get("documents")  # validated first (declared first)
        if documents is not None and len(items) not in (1, len(documents)):
            raise PydanticCustomError(
                "score_pairs",
                "queries must be one string or a list as long as documents (1:N or N:N)",
            )
        return value

    def queries_list(self) -> list[str]:
        return [self.queries] if isinstance(self.queries, str) else self.queries


def check_embedding_batch(parsed: OpenAIRequest, limit: int) -> None:
    """Refuse an embeddings request with more than ``limit`` inputs, or a rerank or
    score request with more than ``limit`` documents (``gateway.max_embedding_inputs``:
    each is one pooled input); other requests pass."""
    if isinstance(parsed, EmbeddingRequest | ScoringRequest):
        if isinstance(parsed, EmbeddingRequest):
            count, param = embedding_input_count(parsed.input), "input"
        else:
            count, param = len(parsed.documents), "documents"
        if count > limit:
            raise InvalidRequest(
                f"{param} holds {count} items; the gateway's limit is {limit} "
                "(gateway.max_embedding_inputs)",
                param=param,
            )


# vLLM 0.32 dropped these guided-decoding fields; its OpenAI server now ignores them
# (a warning in its log, HTTP 200, unconstrained output). Each maps to its replacement.
REMOVED_GUIDED_FIELDS = {
    "guided_json": 'structured_outputs: {"json": <schema>} or response_format '
    '{"type": "json_schema", ...} (text.format on /v1/responses)',
    "guided_regex": 'structured_outputs: {"regex": <pattern>}',
    "guided_choice": 'structured_outputs: {"choice": [...]}',
    "guided_grammar": 'structured_outputs: {"grammar": <EBNF grammar>}',
    "guided_whitespace_pattern": 'structured_outputs: {"whitespace_pattern": <regex>}',
    "guided_decoding_backend": "nothing per request: the engine picks its backend at start "
    '(vLLM --structured-outputs-config \'{"backend": "xgrammar"}\'; default auto)',
}


def check_removed_fields(payload: dict[str, Any]) -> None:
    """Refuse vLLM's removed ``guided_*`` fields: the engine would silently ignore them
    and answer unconstrained, while the caller believes the output is constrained."""
    for name, replacement in REMOVED_GUIDED_FIELDS.items():
        if name in payload:
            raise InvalidRequest(
                f"field {name} is no longer supported by the engine (vLLM 0.32 removed it "
                f"and would silently ignore it, leaving the output unconstrained); "
                f"use {replacement}",
                param=name,
            )


def _prompt_of(payload: dict[str, Any]) -> Any:
    """What counts as the prompt: chat messages, a completion prompt, or a response's
    instructions and input."""
    if "messages" in payload or "prompt" in payload:
        return payload.get("messages", payload.get("prompt", ""))
    return [payload.get("instructions") or "", payload.get("input", "")]


def reserve_tokens(payload: dict[str, Any], parsed: OpenAIRequest, default_max_tokens: int) -> int:
    """Tokens to reserve before the engine counts them: an embeddings request's input
    tokens (it generates none), else the prompt plus the answer's cap."""
    if isinstance(parsed, EmbeddingRequest):
        return embedding_input_tokens(parsed.input)
    if isinstance(parsed, ScoringRequest):
        return parsed.input_tokens()
    if isinstance(parsed, ResponseRequest):
        cap = parsed.max_output_tokens or default_max_tokens
        return estimate_tokens(len(json.dumps(_prompt_of(payload), ensure_ascii=False)), cap)
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
    "max_output_tokens",
)


def audited_params(payload: dict[str, Any]) -> dict[str, Any]:
    return {
        key: payload[key]
        for key in AUDITED_PARAMS
        if key in payload and isinstance(payload[key], bool | int | float | str)
    }


def _answer_cap(parsed: OpenAIRequest) -> tuple[int, str]:
    """The answer's cap as the caller set it (0: none) and the field that set it."""
    for name in ("max_output_tokens", "max_completion_tokens"):
        value = getattr(parsed, name, None)
        if value:
            return int(value), name
    return parsed.max_tokens or 0, "max_tokens"


def check_token_budget(payload: dict[str, Any], parsed: OpenAIRequest, limit: int) -> None:
    """Refuse a request whose estimated prompt tokens plus answer cap exceed ``limit``
    (``gateway.max_request_tokens``): such a number cannot be a real request, and left
    alone it reaches quota arithmetic and telemetry as an absurd value."""
    if isinstance(parsed, EmbeddingRequest | ScoringRequest):
        tokens, param, what = (
            (embedding_input_tokens(parsed.input), "input", "the input exceeds")
            if isinstance(parsed, EmbeddingRequest)
            else (parsed.input_tokens(), "documents", "the query and documents exceed")
        )
        if tokens > limit:
            raise InvalidRequest(f"{what} the gateway's limit of {limit} tokens", param=param)
        return
    cap, param = _answer_cap(parsed)
    if cap > limit:
        raise InvalidRequest(
            f"field {param} exceeds the gateway's limit of {limit} tokens", param=param
        )
    prompt = _prompt_of(payload)
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
