"""Validation of /v1/embeddings requests, their token reservation, and what their
audit records say (counts and dimensions, never a vector)."""

from __future__ import annotations

import base64
import struct
from typing import Any

import pytest

from appliance.config import GatewaySettings
from appliance.errors import InvalidRequest
from appliance.gateway.answers import answer_content, answer_of, answer_params
from appliance.gateway.auditing import embedding_params, request_content
from appliance.gateway.schemas import (
    ChatCompletionRequest,
    EmbeddingRequest,
    check_embedding_batch,
    check_token_budget,
    embedding_input_count,
    embedding_input_tokens,
    reserve_tokens,
    validate_request,
)


@pytest.mark.parametrize(
    ("value", "count"),
    [
        ("hello", 1),
        (["a", "b", "c"], 3),
        ([1, 2, 3], 1),
        ([[1, 2], [3]], 2),
        ([0], 1),
    ],
    ids=["string", "strings", "token-ids", "token-id-lists", "token-zero"],
)
def test_the_four_input_shapes(value: Any, count: int) -> None:
    assert embedding_input_count(value) == count
    parsed = validate_request(EmbeddingRequest, {"model": "e", "input": value})
    assert isinstance(parsed, EmbeddingRequest) and parsed.input == value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "input must not be empty"),
        ([], "input must not be empty"),
        (["a", ""], "input must not hold an empty string"),
        ([[1], []], "each token-id list in input must hold non-negative integers"),
        ([[1], ["a"]], "each token-id list in input must hold non-negative integers"),
        ([1, -1], "token ids in input must be non-negative integers"),
        ([True], "input must be a string, a list of strings"),
        ([1.0], "input must be a string, a list of strings"),
        (["a", 1], "input must be a string, a list of strings"),
        ([["a"], "b"], "input must be a string, a list of strings"),
        (None, "input must be a string, a list of strings"),
        (7, "input must be a string, a list of strings"),
        ({"text": "a"}, "input must be a string, a list of strings"),
    ],
)
def test_bad_input_is_refused_naming_the_field(value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        embedding_input_count(value)
    with pytest.raises(InvalidRequest) as caught:
        validate_request(EmbeddingRequest, {"model": "e", "input": value})
    assert caught.value.param == "input"
    assert caught.value.message.startswith(f"invalid field input: {message}")


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"encoding_format": "int8"}, "encoding_format"),
        ({"dimensions": 0}, "dimensions"),
        ({"dimensions": "8"}, None),  # lax like the other fields: "8" is 8
        ({"stream": True}, "stream"),
    ],
)
def test_options(extra: dict[str, Any], param: str | None) -> None:
    payload = {"model": "e", "input": "hi", **extra}
    if param is None:
        assert validate_request(EmbeddingRequest, payload)
        return
    with pytest.raises(InvalidRequest) as caught:
        validate_request(EmbeddingRequest, payload)
    assert caught.value.param == param


def test_unknown_fields_pass_through() -> None:
    parsed = validate_request(EmbeddingRequest, {"model": "e", "input": "hi", "user": "u"})
    assert parsed.model_extra == {"user": "u"}


def test_batch_limit_names_the_setting() -> None:
    assert GatewaySettings().max_embedding_inputs == 2048
    parsed = validate_request(EmbeddingRequest, {"model": "e", "input": ["a"] * 3})
    check_embedding_batch(parsed, 3)
    with pytest.raises(InvalidRequest) as caught:
        check_embedding_batch(parsed, 2)
    assert caught.value.param == "input"
    assert caught.value.message == (
        "input holds 3 items; the gateway's limit is 2 (gateway.max_embedding_inputs)"
    )
    # One token-id list is one input, however long.
    check_embedding_batch(validate_request(EmbeddingRequest, {"model": "e", "input": [1] * 9}), 1)
    # Other requests are not embeddings batches.
    chat = validate_request(
        ChatCompletionRequest, {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    )
    check_embedding_batch(chat, 1)


def test_reservation_counts_input_tokens_and_no_answer() -> None:
    assert embedding_input_tokens("a" * 40) == 10
    assert embedding_input_tokens([1, 2, 3]) == 3
    assert embedding_input_tokens([[1, 2], [3]]) == 3
    assert embedding_input_tokens(["a" * 8, "b"]) == 3  # 2 + at least 1
    payload = {"model": "e", "input": ["a" * 8, "b"]}
    parsed = validate_request(EmbeddingRequest, payload)
    assert reserve_tokens(payload, parsed, default_max_tokens=1000) == 3
    chat_payload = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    chat = validate_request(ChatCompletionRequest, chat_payload)
    assert reserve_tokens(chat_payload, chat, default_max_tokens=1000) > 1000


def test_token_budget_counts_the_input() -> None:
    payload = {"model": "e", "input": [[1] * 50, [2] * 50]}
    parsed = validate_request(EmbeddingRequest, payload)
    check_token_budget(payload, parsed, 100)
    with pytest.raises(InvalidRequest) as caught:
        check_token_budget(payload, parsed, 99)
    assert caught.value.param == "input"


def test_audit_params_and_sealed_request() -> None:
    assert embedding_params({"model": "e", "input": ["a", "b"]}) == {
        "inputs": 2,
        "encoding_format": "float",
    }
    assert embedding_params(
        {"model": "e", "input": [1, 2], "encoding_format": "base64", "dimensions": 4}
    ) == {"inputs": 1, "encoding_format": "base64", "dimensions": 4}
    assert embedding_params({"model": "m", "prompt": "p", "input": "x"}) == {}
    assert request_content({"model": "e", "input": ["secret"]}) == {"input": ["secret"]}
    assert request_content({"model": "m", "prompt": "p"}) == {"prompt": "p"}


def test_answer_keeps_counts_and_dimension_never_a_vector() -> None:
    vector = [0.25, -0.5, 0.125]
    body = {
        "object": "list",
        "data": [{"index": i, "object": "embedding", "embedding": vector} for i in range(2)],
        "usage": {"prompt_tokens": 2, "total_tokens": 2},
    }
    answer = answer_of(body)
    assert answer_content(answer) == {"embeddings": 2, "dimensions": 3}
    assert answer_params(answer) == {"embeddings": 2, "dimensions": 3}
    for dims in (1, 2, 3, 8, 1024):
        packed = base64.b64encode(struct.pack(f"<{dims}f", *([0.5] * dims))).decode()
        encoded = {"data": [{"index": 0, "embedding": packed}]}
        assert answer_content(answer_of(encoded)) == {"embeddings": 1, "dimensions": dims}
    assert answer_content(answer_of({"data": []})) == {"embeddings": 0, "dimensions": None}
    # Chat answers are unchanged.
    chat = {"choices": [{"index": 0, "message": {"content": "hi"}}]}
    assert answer_content(answer_of(chat)) == {"response": ["hi"]}
    assert answer_of({"object": "error"}) is None
