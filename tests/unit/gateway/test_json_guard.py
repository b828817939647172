"""The body parser's limits: every refusal is an InvalidRequest naming the field, and
nothing else ever escapes (RecursionError, OverflowError, UnicodeError ...)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.errors import InvalidRequest
from appliance.gateway.json_guard import INT64_MAX, JsonLimits, check_json, parse_json

LIMITS = JsonLimits(max_depth=8, max_array_items=5, max_string_chars=20, max_object_keys=4)


def refused(body: bytes | str, limits: JsonLimits = LIMITS) -> InvalidRequest:
    raw = body.encode() if isinstance(body, str) else body
    with pytest.raises(InvalidRequest) as caught:
        parse_json(raw, limits)
    assert caught.value.status_code == 400
    return caught.value


def test_an_ordinary_body_parses() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "héllo 😀"}], "n": 1}
    assert parse_json(json.dumps(body, ensure_ascii=False).encode(), JsonLimits()) == body


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ('{"messages":[{"content":"x \\ud800 y"}]}', "messages.0.content"),
        ('{"m":"\\udfff"}', "m"),
        ('{"a":{"\\ud800":1}}', "a.\ufffd"),
    ],
)
def test_a_lone_surrogate_is_refused_with_its_field(body: str, param: str) -> None:
    error = refused(body)
    assert "surrogate" in error.message
    assert error.param == param


def test_a_surrogate_pair_is_one_character_and_fine() -> None:
    assert parse_json(b'{"c":"\\ud83d\\ude00"}', LIMITS) == {"c": "\U0001f600"}


def test_invalid_utf8_and_invalid_json_are_refused() -> None:
    assert "UTF-8" in refused(b'{"c":"\xed\xa0\x80"}').message
    assert "not valid JSON" in refused("{").message


def test_nesting_past_the_interpreter_limit_is_400_not_recursion_error() -> None:
    body = '{"model":"m","x":' + "[" * 5000 + "]" * 5000 + "}"
    assert "nested deeper" in refused(body, JsonLimits()).message


def test_nesting_past_the_configured_depth_names_the_field() -> None:
    error = refused('{"x":' + "[" * 9 + "]" * 9 + "}")
    assert error.param is not None and error.param.startswith("x.0.0")
    parse_json(('{"x":' + "[" * 6 + "]" * 6 + "}").encode(), LIMITS)  # within the limit


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ('{"max_tokens":1' + "0" * 400 + "}", "max_tokens"),
        (f'{{"seed":{INT64_MAX + 1}}}', "seed"),
        (f'{{"seed":{-INT64_MAX - 2}}}', "seed"),
        ('{"temperature":9007199254740993}', "temperature"),
        ('{"top_p":1e999}', "top_p"),
        ('{"a":[1,-1e400]}', "a.1"),
    ],
)
def test_numbers_out_of_range_are_refused(body: str, param: str) -> None:
    assert refused(body).param == param


def test_numbers_in_range_pass() -> None:
    value = parse_json(f'{{"seed":{INT64_MAX},"temperature":0.7,"n":2}}'.encode(), LIMITS)
    assert value["seed"] == INT64_MAX


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_standard_constants_are_refused(constant: str) -> None:
    assert "not a JSON number" in refused(f'{{"temperature":{constant}}}').message


def test_an_integer_too_long_to_parse_is_refused() -> None:
    assert "not valid JSON" in refused('{"n":' + "9" * 5000 + "}", JsonLimits()).message


def test_array_string_and_object_sizes_are_limited() -> None:
    assert refused('{"prompt":[1,2,3,4,5,6]}').param == "prompt"
    assert refused('{"content":"' + "a" * 21 + '"}').param == "content"
    assert refused('{"a":1,"b":2,"c":3,"d":4,"e":5}').param is None  # the body itself
    parse_json(b'{"prompt":[1,2,3,4,5],"content":"' + b"a" * 20 + b'"}', LIMITS)


def test_the_walk_is_iterative() -> None:
    # A value nested past the recursion limit (built, not parsed) is refused by depth.
    deep: list[object] = []
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(InvalidRequest, match="nested deeper"):
        check_json({"x": deep}, JsonLimits())


_json_text = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF))
_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | _json_text,
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(_json_text, children, max_size=6)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(_json_values)
def test_any_value_parses_or_is_refused_with_400(value: object) -> None:
    # ensure_ascii writes lone surrogates as \\udXXX escapes, as a client might;
    # allow_nan writes NaN/Infinity literals, which Python's json would accept.
    raw = json.dumps({"model": "m", "x": value}, ensure_ascii=True, allow_nan=True).encode()
    try:
        parsed = parse_json(raw, JsonLimits())
    except InvalidRequest as error:
        assert error.status_code == 400
        return
    # Whatever passed can be written as UTF-8 canonical JSON (what the audit log needs).
    json.dumps(parsed, ensure_ascii=False, allow_nan=False).encode("utf-8")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_parse_or_are_refused_with_400(raw: bytes) -> None:
    try:
        parse_json(raw, LIMITS)
    except InvalidRequest:
        pass


def test_token_id_lists_take_the_fast_path_but_keep_every_check() -> None:
    ids = list(range(50_000))
    assert parse_json(json.dumps({"prompt": ids}).encode(), JsonLimits())["prompt"] == ids
    assert refused(f'{{"prompt":[1,2,{2**63}]}}', JsonLimits()).param == "prompt.2"
    assert refused('{"prompt":[1,2,1e999]}', JsonLimits()).param == "prompt.2"
    assert refused('{"prompt":[1,"\\ud800"]}', JsonLimits()).param == "prompt.1"
