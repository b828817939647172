"""What of a body leaves for a provider, and the originals put back into the answer,
whole or streamed (appliance.gateway.egress_body)."""

from __future__ import annotations

import itertools
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.egress import Classification, PlaceholderMap, Pseudonymiser, build_scanner
from appliance.gateway.egress_body import (
    StreamReidentifier,
    pseudonymise_body,
    reidentify_answer,
    request_texts,
    unscannable_parts,
)
from appliance.gateway.sse import SseSplitter

EMAIL = "jane.doe@example.org"
SCANNER = build_scanner()
MAPPING = PlaceholderMap({"⟦EMAIL_1⟧": EMAIL, "⟦IBAN_1⟧": "DE89370400440532013000"})


def body_with_email_everywhere() -> dict[str, Any]:
    return {
        "model": "gpt-4.1@openai",
        "user": EMAIL,
        "messages": [
            {"role": "system", "content": f"Answer {EMAIL}"},
            {"role": "user", "content": [{"type": "text", "text": f"mail {EMAIL}"}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "send", "arguments": json.dumps({"to": EMAIL})}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": f"sent to {EMAIL}"},
        ],
        "tools": [{"type": "function", "function": {
            "name": "send", "description": f"Send mail, e.g. to {EMAIL}", "parameters": {}}}],
        "metadata": {"owner": EMAIL},
    }  # fmt: skip


def test_every_string_that_leaves_is_scanned_and_rewritten() -> None:
    body = body_with_email_everywhere()
    assert sum(EMAIL in text for text in request_texts(body)) == 7
    sent, mapping = pseudonymise_body(
        body, Pseudonymiser(SCANNER, threshold=Classification.INTERNAL)
    )
    assert EMAIL not in json.dumps(sent)
    assert json.dumps(sent, ensure_ascii=False).count("⟦EMAIL_1⟧") == 7
    assert mapping.originals == {"⟦EMAIL_1⟧": EMAIL}
    # The protocol's own fields are untouched; the input is not modified.
    assert sent["model"] == body["model"]
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant", "tool"]
    assert sent["messages"][2]["tool_calls"][0]["id"] == "call_1"
    assert json.loads(sent["messages"][2]["tool_calls"][0]["function"]["arguments"]) == {
        "to": "⟦EMAIL_1⟧"
    }
    assert EMAIL in json.dumps(body)


def test_placeholder_shaped_input_is_never_issued() -> None:
    body = {"messages": [{"role": "user", "content": f"⟦EMAIL_1⟧ is not {EMAIL}"}]}
    sent, mapping = pseudonymise_body(body, Pseudonymiser(SCANNER))
    assert sent["messages"][0]["content"] == "⟦EMAIL_1⟧ is not ⟦EMAIL_2⟧"
    assert dict(mapping.originals) == {"⟦EMAIL_2⟧": EMAIL}


def test_images_audio_and_files_are_reported_as_unscannable() -> None:
    parts = [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
    ]
    assert unscannable_parts({"messages": [{"role": "user", "content": parts}]}) == [
        "image_url",
        "input_audio",
    ]
    assert unscannable_parts(body_with_email_everywhere()) == []


def test_a_whole_answer_is_reidentified_everywhere() -> None:
    answer = {
        "choices": [{"index": 0, "message": {
            "role": "assistant", "content": "Dear ⟦EMAIL_1⟧, ⟦UNKNOWN_1⟧",
            "tool_calls": [{"id": "c", "type": "function", "function": {
                "name": "pay",
                "arguments": json.dumps({"iban": "⟦IBAN_1⟧"}, ensure_ascii=False)}}]}}],
    }  # fmt: skip
    restored = json.loads(reidentify_answer(json.dumps(answer).encode(), MAPPING))
    message = restored["choices"][0]["message"]
    assert message["content"] == f"Dear {EMAIL}, ⟦UNKNOWN_1⟧"  # only issued ones
    assert json.loads(message["tool_calls"][0]["function"]["arguments"]) == {
        "iban": "DE89370400440532013000"
    }
    assert reidentify_answer(b"not json", MAPPING) == b"not json"
    assert reidentify_answer(b'{"a": "\\u27e6EMAIL_1\\u27e7"}', PlaceholderMap({})) == (
        b'{"a": "\\u27e6EMAIL_1\\u27e7"}'
    )


def chunk(delta: dict[str, Any], finish: str | None = None, index: int = 0) -> bytes:
    body = {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": index, "delta": delta, "finish_reason": finish}]}  # fmt: skip
    return b"data: " + json.dumps(body, ensure_ascii=False).encode() + b"\n\n"


def client_view(events: list[bytes]) -> tuple[str, str]:
    """(content, tool arguments) as a client would assemble them."""
    content, arguments = [], []
    for event in SseSplitter().feed(b"".join(events)):
        data = event.decode().removeprefix("data: ").strip()
        if data == "[DONE]":
            continue
        for choice in json.loads(data)["choices"]:
            delta = choice.get("delta") or {}
            content.append(delta.get("content") or "")
            for call in delta.get("tool_calls") or []:
                arguments.append(call["function"].get("arguments") or "")
    return "".join(content), "".join(arguments)


ANSWER = "Dear ⟦EMAIL_1⟧, your IBAN ⟦IBAN_1⟧ is noted; ⟦EMAIL_1⟧ again ⟦"
ARGUMENTS = '{"to": "⟦EMAIL_1⟧"}'


@settings(max_examples=200, deadline=None)
@given(
    cuts=st.lists(st.integers(min_value=1, max_value=len(ANSWER) - 1), unique=True),
    arg_cuts=st.lists(st.integers(min_value=1, max_value=len(ARGUMENTS) - 1), unique=True),
)
def test_every_split_of_a_stream_is_restored_exactly(cuts: list[int], arg_cuts: list[int]) -> None:
    def pieces(text: str, at: list[int]) -> list[str]:
        bounds = [0, *sorted(at), len(text)]
        return [text[a:b] for a, b in itertools.pairwise(bounds)]

    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": piece}) for piece in pieces(ANSWER, cuts)]
    events += [
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
        for piece in pieces(ARGUMENTS, arg_cuts)
    ]
    events += [chunk({}, "stop"), b"data: [DONE]\n\n"]
    restore = StreamReidentifier(MAPPING)
    out = [restore.event(event) for event in events]
    content, arguments = client_view(out)
    assert content == f"Dear {EMAIL}, your IBAN DE89370400440532013000 is noted; {EMAIL} again ⟦"
    assert json.loads(arguments) == {"to": EMAIL}
    # Nothing is held after the choice finished, and [DONE] stays last.
    assert restore.end() == b""
    assert out[-1].endswith(b"data: [DONE]\n\n")


def test_a_stream_that_ends_without_finishing_flushes_before_done() -> None:
    restore = StreamReidentifier(MAPPING)
    first = restore.event(chunk({"content": "to ⟦EMA"}))
    assert client_view([first])[0] == "to "
    done = restore.event(b"data: [DONE]\n\n")
    assert client_view([first, done])[0] == "to ⟦EMA"
    assert done.endswith(b"data: [DONE]\n\n")


def test_numbers_and_keys_are_scanned_too() -> None:
    card = 4242424242424242
    body = {"metadata": {"card": card, "small": 42, EMAIL: "owner"}}
    assert str(card) in request_texts(body) and EMAIL in request_texts(body)
    sent, mapping = pseudonymise_body(body, Pseudonymiser(SCANNER))
    assert sent["metadata"]["card"] == "⟦CARD_1⟧" and sent["metadata"]["small"] == 42
    assert EMAIL not in json.dumps(sent) and set(mapping.originals.values()) == {
        str(card),
        EMAIL,
    }
