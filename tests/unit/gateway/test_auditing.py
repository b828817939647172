"""appliance/gateway/auditing.py: what of an answer reaches the audit, and where."""

from __future__ import annotations

from appliance.gateway.answers import AnswerStream, answer_content, answer_of, answer_params
from appliance.gateway.auditing import tool_params


def _chunk(delta: dict[str, object], index: int = 0) -> dict[str, object]:
    return {"choices": [{"index": index, "delta": delta}]}


def test_streamed_tool_calls_are_merged_per_choice_and_call() -> None:
    stream = AnswerStream()
    stream.add(_chunk({"role": "assistant", "content": ""}))
    for call, name in ((0, "get_weather"), (1, "get_time")):
        head = {"index": call, "id": f"c{call}", "type": "function", "function": {"name": name}}
        stream.add(_chunk({"tool_calls": [head]}))
    stream.add(_chunk({"tool_calls": [{"index": 1, "function": {"arguments": '{"tz"'}}]}))
    stream.add(_chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}))
    stream.add(_chunk({"tool_calls": [{"index": 1, "function": {"arguments": ': "UTC"}'}}]}))
    stream.add({"choices": [], "usage": {"prompt_tokens": 1}})
    stream.add(None)
    answer = stream.answer()
    assert answer.texts == [""]
    assert answer.tool_names() == ["get_weather", "get_time"]
    assert answer.tool_calls[1] == {
        "choice": 0, "id": "c1", "type": "function",
        "function": {"name": "get_time", "arguments": '{"tz": "UTC"}'},
    }  # fmt: skip
    assert answer_params(answer) == {"tool_calls": ["get_weather", "get_time"]}
    assert answer_content(answer) == {"response": [""], "tool_calls": answer.tool_calls}


def test_plain_answers_keep_their_old_audit_shape() -> None:
    body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "Paris."}}]}
    answer = answer_of(body)
    assert answer_content(answer) == {"response": ["Paris."]}
    assert answer_params(answer) is None
    assert answer_of({"error": "x"}) is None and answer_content(None) is None


def test_non_streamed_tool_calls_keep_their_arguments_for_the_sealed_content() -> None:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    body = {"choices": [{"index": 0, "message": {"content": None, "tool_calls": [call]}}]}
    answer = answer_of(body)
    assert answer is not None and answer.tool_calls == [{"choice": 0, **call}]
    assert answer_params(answer) == {"tool_calls": ["f"]}


def test_tool_params_name_tools_and_modes_never_schemas() -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": {"secret": 1}}}
    assert tool_params({"tools": [tool], "tool_choice": "auto", "parallel_tool_calls": True}) == {
        "tools": ["f"], "tool_choice": "auto", "parallel_tool_calls": True,
    }  # fmt: skip
    named = {"type": "function", "function": {"name": "f"}}
    assert tool_params({"tool_choice": named}) == {"tool_choice": {"function": "f"}}
    schema = {"type": "json_schema", "json_schema": {"schema": {"secret": 1}}}
    assert tool_params({"response_format": schema}) == {"response_format": "json_schema"}
    assert tool_params({"messages": [], "tools": "junk", "response_format": 3}) == {}
