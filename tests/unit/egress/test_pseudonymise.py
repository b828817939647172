"""appliance/egress/pseudonymise.py and placeholders.py: stable placeholders, chat
messages, thresholds, reserved tokens, and the round trip through reidentify."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from appliance.egress import (
    Classification,
    PlaceholderMap,
    Pseudonymiser,
    Scanner,
    pseudonymise_messages,
    pseudonymise_text,
    reidentify,
)
from appliance.egress.placeholders import TOKEN, placeholder

EMAIL = "jane.doe@example.com"
IBAN = "DE89 3704 0044 0532 0130 00"


def test_text_gets_stable_numbered_placeholders(scanner: Scanner) -> None:
    text = f"{EMAIL} wrote to bob@example.org, then {EMAIL} again; IBAN {IBAN}."
    result = pseudonymise_text(text, scanner)
    assert result.value == "⟦EMAIL_1⟧ wrote to ⟦EMAIL_2⟧, then ⟦EMAIL_1⟧ again; IBAN ⟦IBAN_1⟧."
    assert dict(result.mapping) == {
        "⟦EMAIL_1⟧": EMAIL,
        "⟦EMAIL_2⟧": "bob@example.org",
        "⟦IBAN_1⟧": IBAN,
    }
    assert result.summary.to_audit() == {
        "classification": "confidential",
        "detectors": {"email": 3, "iban": 1},
    }
    assert reidentify(result.value, result.mapping) == text


def test_mapping_repr_hides_values(scanner: Scanner) -> None:
    mapping = pseudonymise_text(EMAIL, scanner).mapping
    assert EMAIL not in repr(mapping) and "1 placeholders" in repr(mapping)


def test_threshold_leaves_lower_findings_in_place_but_counts_them(scanner: Scanner) -> None:
    text = f"{EMAIL} pays with {IBAN}"
    result = pseudonymise_text(text, scanner, threshold=Classification.CONFIDENTIAL)
    assert result.value == f"{EMAIL} pays with ⟦IBAN_1⟧"
    assert dict(result.summary.counts) == {"email": 1, "iban": 1}


def test_text_without_findings_is_unchanged(scanner: Scanner) -> None:
    result = pseudonymise_text("Nothing to see in 2024.", scanner)
    assert result.value == "Nothing to see in 2024."
    assert len(result.mapping) == 0
    assert result.summary.classification is Classification.PUBLIC


def test_placeholders_already_in_the_input_are_never_issued(scanner: Scanner) -> None:
    text = f"The template says ⟦EMAIL_1⟧; mine is {EMAIL}."
    result = pseudonymise_text(text, scanner)
    assert result.value == "The template says ⟦EMAIL_1⟧; mine is ⟦EMAIL_2⟧."
    assert reidentify(result.value, result.mapping) == text


def test_messages(scanner: Scanner) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are helpful. Example token: ⟦EMAIL_1⟧"},
        {"role": "user", "content": f"My mail is {EMAIL}."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": f"Again {EMAIL}, IBAN {IBAN}"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        },
        {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]},
        {"role": "tool", "content": "ok", "tool_call_id": "1"},
    ]
    before = copy.deepcopy(messages)
    result = pseudonymise_messages(messages, scanner)
    assert messages == before  # the input is not modified
    out = result.value
    assert out[0] == messages[0]
    assert out[1] == {"role": "user", "content": "My mail is ⟦EMAIL_2⟧."}
    assert out[2]["content"][0] == {"type": "text", "text": "Again ⟦EMAIL_2⟧, IBAN ⟦IBAN_1⟧"}
    assert out[2]["content"][1] is messages[2]["content"][1]
    assert out[3] == messages[3] and out[4] == messages[4]
    assert result.summary.to_audit() == {
        "classification": "confidential",
        "detectors": {"email": 2, "iban": 1},
    }
    assert (
        reidentify("Sent to ⟦EMAIL_2⟧ from ⟦IBAN_1⟧", result.mapping)
        == f"Sent to {EMAIL} from {IBAN}"
    )


def test_pseudonymiser_reuses_a_given_scan(scanner: Scanner) -> None:
    text = f"mail {EMAIL}"
    result = scanner.scan(text)
    pseudonymiser = Pseudonymiser(scanner)
    assert pseudonymiser.text(text, result) == "mail ⟦EMAIL_1⟧"
    assert pseudonymiser.text(f"cc {EMAIL}") == "cc ⟦EMAIL_1⟧"
    assert dict(pseudonymiser.summary.counts) == {"email": 2}


def test_labels_from_detectors_and_dictionaries(scanner: Scanner) -> None:
    text = "AKIAIOSFODNN7EXAMPLE and 4111 1111 1111 1111 and +49 30 1234567 and 536-90-4399"
    value = pseudonymise_text(text, scanner).value
    assert value == "⟦SECRET_1⟧ and ⟦CARD_1⟧ and ⟦PHONE_1⟧ and ⟦NATIONAL_ID_1⟧"


def test_placeholder_format() -> None:
    assert placeholder("EMAIL", 12) == "\u27e6EMAIL_12\u27e7"
    assert TOKEN.fullmatch(placeholder("NATIONAL_ID", 1))
    assert PlaceholderMap({"⟦A_1⟧": "x"})["⟦A_1⟧"] == "x"


pieces = st.lists(
    st.sampled_from(
        [
            EMAIL,
            "bob@example.org",
            IBAN,
            "4111111111111111",
            "AKIAIOSFODNN7EXAMPLE",
            "+49 30 1234567",
            "⟦EMAIL_1⟧",
            "⟦",
            "⟧",
            " ",
            ", ",
            "\n",
            "text",
            "2024",
        ]
    ),
    max_size=20,
).map("".join)


@given(st.one_of(pieces, st.text(max_size=200)))
def test_reidentify_inverts_pseudonymise(scanner: Scanner, text: str) -> None:
    result = pseudonymise_text(text, scanner)
    assert reidentify(result.value, result.mapping) == text
    originals = list(result.mapping.values())
    assert len(set(originals)) == len(originals)  # one placeholder per original
