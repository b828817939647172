"""appliance/egress/reidentify.py: whole answers, and the streaming re-identifier whose
output for any split of an answer into chunks equals the whole-answer result."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from appliance.egress.placeholders import PlaceholderMap
from appliance.egress.reidentify import StreamingReidentifier, reidentify

MAPPING = PlaceholderMap(
    {
        "⟦EMAIL_1⟧": "jane@example.com",
        "⟦EMAIL_12⟧": "bob@example.org",
        "⟦IBAN_1⟧": "DE89 3704 0044 0532 0130 00",
        "⟦NATIONAL_ID_1⟧": "536-90-4399",
    }
)


def stream(chunks: list[str], mapping: PlaceholderMap = MAPPING) -> str:
    reidentifier = StreamingReidentifier(mapping)
    return "".join(reidentifier.feed(chunk) for chunk in chunks) + reidentifier.flush()


def test_reidentify_replaces_known_tokens_only() -> None:
    answer = "Write to ⟦EMAIL_1⟧ and ⟦EMAIL_12⟧, not ⟦EMAIL_2⟧ or [EMAIL_1] or ⟦email_1⟧."
    assert reidentify(answer, MAPPING) == (
        "Write to jane@example.com and bob@example.org, not ⟦EMAIL_2⟧ or [EMAIL_1] or ⟦email_1⟧."
    )
    assert reidentify(answer, PlaceholderMap()) == answer


def test_replacement_is_single_pass() -> None:
    mapping = PlaceholderMap({"⟦A_1⟧": "⟦A_2⟧", "⟦A_2⟧": "two"})
    assert reidentify("⟦A_1⟧ ⟦A_2⟧", mapping) == "⟦A_2⟧ two"


def test_split_placeholder_is_held_back_then_replaced() -> None:
    reidentifier = StreamingReidentifier(MAPPING)
    assert reidentifier.feed("Mail ⟦EMA") == "Mail "
    assert reidentifier.pending == "⟦EMA"
    assert reidentifier.feed("IL_1") == ""
    assert reidentifier.feed("⟧ now") == "jane@example.com now"
    assert reidentifier.flush() == ""


def test_only_a_possible_prefix_is_held_back() -> None:
    reidentifier = StreamingReidentifier(MAPPING)
    assert reidentifier.feed("a ⟦X") == "a ⟦X"  # no known placeholder starts with ⟦X
    assert reidentifier.feed("⟦EMAIL_1 is") == "⟦EMAIL_1 is"
    assert reidentifier.feed(" ⟦") == " "
    assert reidentifier.pending == "⟦"


def test_prefix_of_a_longer_placeholder_waits_for_the_next_chunk() -> None:
    # ⟦EMAIL_1 could still become ⟦EMAIL_12⟧.
    reidentifier = StreamingReidentifier(MAPPING)
    assert reidentifier.feed("⟦EMAIL_1") == ""
    assert reidentifier.feed("2⟧!") == "bob@example.org!"


def test_flush_emits_an_unfinished_placeholder_as_is() -> None:
    reidentifier = StreamingReidentifier(MAPPING)
    assert reidentifier.feed("cut off at ⟦IBA") == "cut off at "
    assert reidentifier.flush() == "⟦IBA"
    assert reidentifier.flush() == ""


def test_one_character_chunks() -> None:
    answer = "⟦⟦EMAIL_1⟧⟧ and ⟦IBAN_1⟧⟦NATIONAL_ID_1⟧."
    assert stream(list(answer)) == reidentify(answer, MAPPING)


def test_no_mapping_streams_through() -> None:
    reidentifier = StreamingReidentifier(PlaceholderMap())
    assert reidentifier.feed("⟦EMAIL_1") == "⟦EMAIL_1"


answers = st.lists(
    st.one_of(
        st.sampled_from([*MAPPING, "⟦", "⟧", "⟦EMAIL_", "⟦EMAIL_2⟧", "_1⟧", "EMAIL", " "]),
        st.text(alphabet="ab ⟦⟧_1AEIML", max_size=5),
    ),
    max_size=25,
).map("".join)


@st.composite
def split_answers(draw: st.DrawFn) -> tuple[str, list[str]]:
    answer = draw(answers)
    cuts = sorted(draw(st.lists(st.integers(0, len(answer)), max_size=12)))
    bounds = [0, *cuts, len(answer)]
    return answer, [answer[a:b] for a, b in itertools.pairwise(bounds)]


@given(split_answers())
def test_streaming_equals_whole_answer_for_any_split(case: tuple[str, list[str]]) -> None:
    answer, chunks = case
    assert "".join(chunks) == answer
    assert stream(chunks) == reidentify(answer, MAPPING)


@given(split_answers())
def test_streaming_holds_back_at_most_one_placeholder(case: tuple[str, list[str]]) -> None:
    _, chunks = case
    longest = max(len(token) for token in MAPPING)
    reidentifier = StreamingReidentifier(MAPPING)
    for chunk in chunks:
        reidentifier.feed(chunk)
        assert len(reidentifier.pending) < longest
        assert reidentifier.pending == "" or reidentifier.pending.startswith("⟦")
