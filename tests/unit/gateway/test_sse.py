from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from appliance.gateway.sse import (
    SseSplitter,
    Usage,
    event_data,
    is_usage_only_chunk,
    parse_event_json,
    usage_of,
)

STREAM = (
    b'data: {"choices": [{"delta": {"content": "Par"}}]}\n\n'
    b'data: {"choices": [{"delta": {"content": "is"}}]}\n\n'
    b'data: {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}}\n\n'
    b"data: [DONE]\n\n"
)


def test_splits_whole_events() -> None:
    splitter = SseSplitter()
    events = splitter.feed(STREAM)
    assert len(events) == 4
    assert b"".join(events) == STREAM
    assert splitter.pending() == b""


def test_keeps_a_partial_event_until_its_end_arrives() -> None:
    splitter = SseSplitter()
    assert splitter.feed(b"data: {") == []
    assert splitter.pending() == b"data: {"
    assert splitter.feed(b"}\n") == []
    assert splitter.feed(b"\n") == [b"data: {}\n\n"]


def test_crlf_and_cr_separators() -> None:
    assert SseSplitter().feed(b"data: a\r\n\r\ndata: b\r\r") == [b"data: a\r\n\r\n", b"data: b\r\r"]


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_chunking_gives_back_the_same_bytes_and_events(cuts: list[int]) -> None:
    """Forwarding split events never adds, drops or reorders a byte."""
    points = sorted(set(cuts))
    chunks = [STREAM[a:b] for a, b in zip([0, *points], [*points, len(STREAM)], strict=True)]
    splitter = SseSplitter()
    events = [event for chunk in chunks for event in splitter.feed(chunk)]
    assert b"".join(events) + splitter.pending() == STREAM
    assert len(events) == 4


def test_event_data_joins_data_lines_and_ignores_others() -> None:
    assert event_data(b"event: x\ndata: a\ndata:b\n: comment\n\n") == "a\nb"
    assert event_data(b": keep-alive\n\n") is None


def test_usage_detection() -> None:
    events = SseSplitter().feed(STREAM)
    bodies = [parse_event_json(event) for event in events]
    assert bodies[3] is None  # [DONE]
    assert usage_of(bodies[2]) == Usage(prompt_tokens=5, completion_tokens=2)
    assert is_usage_only_chunk(bodies[2])
    assert not is_usage_only_chunk(bodies[0])
    assert usage_of(bodies[0]) is None


def test_usage_tolerates_odd_shapes() -> None:
    assert usage_of({"usage": None}) is None
    assert usage_of({"usage": {"prompt_tokens": "7"}}) == Usage(None, None)
    assert parse_event_json(b"data: not json\n\n") is None
    assert parse_event_json(b"data: [1, 2]\n\n") is None
    # A final chunk that carries usage *and* choices is not dropped.
    both = {"choices": [{"delta": {}}], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}
    assert not is_usage_only_chunk(json.loads(json.dumps(both)))


@given(st.binary(max_size=200))
def test_never_raises_on_arbitrary_bytes(data: bytes) -> None:
    splitter = SseSplitter()
    for event in splitter.feed(data):
        parse_event_json(event)
    assert b"".join(SseSplitter().feed(data)) in data
