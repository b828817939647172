from __future__ import annotations

import pytest

from appliance.errors import InvalidRequest
from appliance.gateway.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    audited_params,
    check_token_budget,
    validate_request,
)

MESSAGES = [{"role": "user", "content": "hi"}]


def test_unknown_fields_pass_through() -> None:
    parsed = validate_request(
        ChatCompletionRequest, {"model": "m", "messages": MESSAGES, "repetition_penalty": 1.1}
    )
    assert parsed.model_extra == {"repetition_penalty": 1.1}


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"messages": MESSAGES}, "model"),
        ({"model": "", "messages": MESSAGES}, "model"),
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": [{"content": "no role"}]}, "messages.0.role"),
        ({"model": "m", "messages": MESSAGES, "temperature": 2.5}, "temperature"),
        ({"model": "m", "messages": MESSAGES, "top_p": 0}, "top_p"),
        ({"model": "m", "messages": MESSAGES, "n": 0}, "n"),
        ({"model": "m", "messages": MESSAGES, "max_tokens": -1}, "max_tokens"),
        ({"model": "m\x00x", "messages": MESSAGES}, "model"),
        ({"model": "m\nx", "messages": MESSAGES}, "model"),
    ],
)
def test_invalid_fields_name_the_param(payload: dict[str, object], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate_request(ChatCompletionRequest, payload)
    assert caught.value.param == param
    assert param in caught.value.message


def test_error_message_never_echoes_the_value() -> None:
    secret = "sk-live-should-not-echo"
    with pytest.raises(InvalidRequest) as caught:
        validate_request(ChatCompletionRequest, {"model": "m", "messages": MESSAGES, "n": secret})
    assert secret not in caught.value.message


def test_body_must_be_an_object() -> None:
    with pytest.raises(InvalidRequest):
        validate_request(CompletionRequest, ["not", "an", "object"])


def test_completion_needs_a_prompt() -> None:
    assert validate_request(CompletionRequest, {"model": "m", "prompt": "x"}).model == "m"
    with pytest.raises(InvalidRequest) as caught:
        validate_request(CompletionRequest, {"model": "m"})
    assert caught.value.param == "prompt"


def test_audited_params_keep_scalars_and_never_content() -> None:
    payload = {
        "model": "m",
        "messages": MESSAGES,
        "prompt": "secret text",
        "temperature": 0.2,
        "max_tokens": 5,
        "stream": True,
        "stop": ["x"],
        "seed": {"nested": 1},
    }
    assert audited_params(payload) == {"temperature": 0.2, "max_tokens": 5, "stream": True}


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"max_tokens": 1001}, "max_tokens"),
        ({"max_completion_tokens": 10**400}, "max_completion_tokens"),
        ({"max_tokens": 900, "messages": [{"role": "user", "content": "x" * 1000}]}, "max_tokens"),
    ],
)
def test_token_budget_refuses_absurd_requests(extra: dict[str, object], param: str) -> None:
    payload = {"model": "m", "messages": MESSAGES, **extra}
    parsed = validate_request(ChatCompletionRequest, payload)
    with pytest.raises(InvalidRequest) as caught:
        check_token_budget(payload, parsed, 1000)
    assert caught.value.param == param


def test_token_budget_lets_ordinary_requests_through() -> None:
    payload = {"model": "m", "messages": MESSAGES, "max_tokens": 900}
    check_token_budget(payload, validate_request(ChatCompletionRequest, payload), 1000)
    prompt = {"model": "m", "prompt": "hi"}
    check_token_budget(prompt, validate_request(CompletionRequest, prompt), 1000)
