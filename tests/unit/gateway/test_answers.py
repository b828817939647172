"""appliance/gateway/answers.py: a reasoning model's thinking text is sealed, per
choice, under either field name; the clear params only say that there was some."""

from __future__ import annotations

from typing import Any

import pytest

from appliance.gateway.answers import (
    REASONING_FIELDS,
    AnswerStream,
    answer_content,
    answer_of,
    answer_params,
)


def _chunk(*deltas: tuple[int, dict[str, Any]]) -> dict[str, Any]:
    return {"choices": [{"index": index, "delta": delta} for index, delta in deltas]}


@pytest.mark.parametrize("key", REASONING_FIELDS)
def test_streamed_reasoning_is_joined_per_choice_across_chunks(key: str) -> None:
    stream = AnswerStream()
    stream.add(_chunk((0, {"role": "assistant", "content": ""}), (1, {"role": "assistant"})))
    stream.add(_chunk((0, {key: "Fran"}), (1, {key: "Let me"})))
    stream.add(_chunk((1, {key: " think"})))
    stream.add(_chunk((0, {key: "ce."}), (1, {"content": "Rome"})))
    stream.add(_chunk((0, {"content": "Paris"}), (1, {key: None, "content": "."})))
    stream.add({"choices": [], "usage": {"prompt_tokens": 1}})
    answer = stream.answer()
    assert answer.texts == ["Paris", "Rome."]
    assert answer.reasoning == ["France.", "Let me think"]
    assert answer_content(answer) == {
        "response": ["Paris", "Rome."],
        "reasoning": ["France.", "Let me think"],
    }
    assert answer_params(answer) == {"reasoning": True}


def test_a_choice_without_reasoning_gets_an_empty_string() -> None:
    stream = AnswerStream()
    stream.add(_chunk((0, {"content": "A"}), (1, {"content": "B"}), (2, {"content": "C"})))
    stream.add(_chunk((1, {"reasoning": "only the second thought"})))
    assert stream.answer().reasoning == ["", "only the second thought", ""]


def test_a_server_sending_both_field_names_is_not_recorded_twice() -> None:
    stream = AnswerStream()
    stream.add(_chunk((0, {"reasoning_content": "hmm", "reasoning": "hmm"})))
    stream.add(_chunk((0, {"reasoning_content": "", "reasoning": "!"})))
    assert stream.answer().reasoning == ["hmm!"]


@pytest.mark.parametrize("key", REASONING_FIELDS)
def test_non_streamed_reasoning_of_n_choices(key: str) -> None:
    body = {
        "choices": [
            {"index": 1, "message": {"role": "assistant", "content": "Rome", key: "Italy?"}},
            {"index": 0, "message": {"role": "assistant", "content": None, key: "all thought"}},
        ]
    }
    answer = answer_of(body)
    assert answer is not None
    # A message that is all reasoning has no content text; its reasoning is kept.
    assert answer.texts == ["Rome"]
    assert answer.reasoning == ["all thought", "Italy?"]
    assert answer_content(answer) == {"response": ["Rome"], "reasoning": ["all thought", "Italy?"]}
    assert answer_params(answer) == {"reasoning": True}


def test_no_reasoning_keeps_the_old_shape_and_tool_names_stay_beside_the_flag() -> None:
    plain = answer_of(
        {"choices": [{"index": 0, "message": {"content": "Paris", "reasoning": None}}]}
    )
    assert answer_content(plain) == {"response": ["Paris"]} and answer_params(plain) is None
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    message = {"content": None, "reasoning": "call f", "tool_calls": [call]}
    answer = answer_of({"choices": [{"index": 0, "message": message}]})
    assert answer_params(answer) == {"tool_calls": ["f"], "reasoning": True}
    assert answer_content(answer) == {
        "response": [], "reasoning": ["call f"], "tool_calls": [{"choice": 0, **call}],
    }  # fmt: skip
