"""appliance/models/chat_templates/: the DeepSeek tool chat templates, rendered the way
vLLM renders them (transformers' sandboxed Jinja environment, through a tokenizer's
apply_chat_template) and read back by vLLM 0.32's own parsers from the venv.

The tokenizer is a minimal one built here: one token per character plus DeepSeek's
special tokens, so that a rendered prompt shows which markers are single special tokens.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from appliance.planner.profiles import CHAT_TEMPLATES_SUBDIR, default_profiles_dir, load_profiles

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

TEMPLATES = default_profiles_dir() / CHAT_TEMPLATES_SUBDIR
V3 = "tool_chat_template_deepseekv3.jinja"
R1 = "tool_chat_template_deepseekr1.jinja"


def _marker(words: str) -> str:
    """DeepSeek's special token spelling: FULLWIDTH VERTICAL LINE (U+FF5C) around the
    words, LOWER ONE EIGHTH BLOCK (U+2581) between them."""
    return "<\uff5c" + "\u2581".join(words.split()) + "\uff5c>"


BOS, EOS = _marker("begin of sentence"), _marker("end of sentence")
USER, ASSISTANT = _marker("User"), _marker("Assistant")
CALLS_BEGIN, CALLS_END = _marker("tool calls begin"), _marker("tool calls end")
CALL_BEGIN, CALL_END = _marker("tool call begin"), _marker("tool call end")
SEP = _marker("tool sep")
OUTPUTS_BEGIN, OUTPUTS_END = _marker("tool outputs begin"), _marker("tool outputs end")
OUTPUT_BEGIN, OUTPUT_END = _marker("tool output begin"), _marker("tool output end")
SPECIAL = [BOS, EOS, USER, ASSISTANT, CALLS_BEGIN, CALLS_END, CALL_BEGIN, CALL_END, SEP,
           OUTPUTS_BEGIN, OUTPUTS_END, OUTPUT_BEGIN, OUTPUT_END, "<think>", "</think>"]  # fmt: skip

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather of a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


def _call(call_id: str, city: str, *, as_text: bool = False) -> dict[str, Any]:
    arguments: Any = {"city": city}
    return {
        "id": call_id,
        "type": "function",
        "function": {
            "name": "get_weather",
            # vLLM hands the template a dict (chat_utils._postprocess_messages); a client's
            # JSON string must come out the same.
            "arguments": json.dumps(arguments, ensure_ascii=False) if as_text else arguments,
        },
    }


CONVERSATION: list[dict[str, Any]] = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "Weather in Paris and Zürich?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [_call("a", "Paris"), _call("b", "Zürich", as_text=True)],
    },
    {"role": "tool", "tool_call_id": "a", "content": "18 °C, sunny"},
    {"role": "tool", "tool_call_id": "b", "content": "12 °C, rain"},
]

CALLS = (
    f"{CALLS_BEGIN}{CALL_BEGIN}function{SEP}get_weather\n```json\n"
    '{"city": "Paris"}\n'
    f"```{CALL_END}\n{CALL_BEGIN}function{SEP}get_weather\n```json\n"
    '{"city": "Zürich"}\n'
    f"```{CALL_END}{CALLS_END}"
)
OUTPUTS = (
    f"{OUTPUTS_BEGIN}{OUTPUT_BEGIN}18 °C, sunny{OUTPUT_END}\n"
    f"{OUTPUT_BEGIN}12 °C, rain{OUTPUT_END}{OUTPUTS_END}"
)


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    """A character-level fast tokenizer with DeepSeek's special tokens as added tokens."""
    marker_chars = set("".join(SPECIAL))
    corpus = {ch for text in _corpus() for ch in text} - marker_chars  # markers: whole tokens
    alphabet = sorted(corpus | {chr(code) for code in range(32, 127)} | {"\n"})
    vocab = {"[UNK]": 0, **{ch: index + 1 for index, ch in enumerate(alphabet)}}
    model = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    model.pre_tokenizer = tokenizers.pre_tokenizers.Split("", "isolated")
    model.decoder = tokenizers.decoders.Fuse()
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=model, bos_token=BOS, eos_token=EOS, unk_token="[UNK]"
    )
    fast.add_special_tokens({"additional_special_tokens": SPECIAL[2:]})
    return fast


def _corpus() -> list[str]:
    return [path.read_text(encoding="utf-8") for path in TEMPLATES.glob("*.jinja")] + [
        json.dumps(CONVERSATION, ensure_ascii=False),
        "°Zürich",
    ]


def _render(tokenizer: Any, name: str, messages: list[dict[str, Any]], **kwargs: Any) -> str:
    text: str = tokenizer.apply_chat_template(
        messages,
        tools=kwargs.pop("tools", TOOLS),
        chat_template=(TEMPLATES / name).read_text(encoding="utf-8"),
        tokenize=False,
        **kwargs,
    )
    return text


def _system_prompt(rendered: str) -> str:
    return rendered[len(BOS) : rendered.index(USER)]


# -- the profiles name them -----------------------------------------------------------
def test_every_deepseek_tool_profile_names_a_shipped_template() -> None:
    expected = {
        "deepseek-v3": V3, "deepseek-v3-0324": V3, "deepseek-v3-0324-fp4": V3,
        "deepseek-r1": R1, "deepseek-r1-0528": R1, "deepseek-r1-fp4": R1,
    }  # fmt: skip
    profiles = load_profiles()
    for name, template in expected.items():
        assert profiles[name].chat_template == template, name
        assert (TEMPLATES / template).is_file()
    for profile in profiles.values():
        if profile.tool_call_parser == "deepseek_v3":
            assert profile.chat_template in (V3, R1), profile.name
        if profile.chat_template == R1:
            assert profile.reasoning_parser == "deepseek_r1", profile.name


def test_vllm_reads_them_as_string_content_templates() -> None:
    """vLLM passes message content as text, not OpenAI parts, to these templates."""
    hf = pytest.importorskip("vllm.renderers.hf")
    for name in (V3, R1):
        text = (TEMPLATES / name).read_text(encoding="utf-8")
        assert hf._detect_content_format(text, default="openai") == "string"


# -- DeepSeek-V3 ----------------------------------------------------------------------
def test_v3_layout_of_calls_results_and_the_answer(tokenizer: Any) -> None:
    rendered = _render(tokenizer, V3, CONVERSATION, add_generation_prompt=True)
    system = _system_prompt(rendered)
    assert system.startswith("Answer briefly.\n\n## Tools\n")
    assert "### get_weather\nCurrent weather of a city\nParameters: " in system
    assert json.dumps(TOOLS[0]["function"]["parameters"]) in system
    # After tool results the model continues right away, no Assistant marker (DeepSeek's).
    assert rendered == (
        f"{BOS}{system}{USER}Weather in Paris and Zürich?{ASSISTANT}{CALLS}{EOS}{OUTPUTS}"
    )


def test_v3_answer_after_results_and_generation_prompt(tokenizer: Any) -> None:
    messages = [
        *CONVERSATION,
        {"role": "assistant", "content": "Paris 18 °C, Zürich 12 °C."},
        {"role": "user", "content": "Thanks"},
    ]
    rendered = _render(tokenizer, V3, messages, add_generation_prompt=True, tools=None)
    assert rendered == (
        f"{BOS}Answer briefly.{USER}Weather in Paris and Zürich?{ASSISTANT}{CALLS}{EOS}{OUTPUTS}"
        f"Paris 18 °C, Zürich 12 °C.{EOS}{USER}Thanks{ASSISTANT}"
    )
    without = _render(tokenizer, V3, messages, add_generation_prompt=False, tools=None)
    assert without == rendered.removesuffix(ASSISTANT)


def test_v3_text_before_calls_and_no_system_prompt(tokenizer: Any) -> None:
    messages = [
        {"role": "user", "content": "Paris?"},
        {"role": "assistant", "content": "Let me look.", "tool_calls": [_call("a", "Paris")]},
    ]
    rendered = _render(tokenizer, V3, messages, tools=None)
    call = f"{CALL_BEGIN}function{SEP}get_weather\n```json\n" + '{"city": "Paris"}\n```'
    assert rendered == (
        f"{BOS}{USER}Paris?{ASSISTANT}Let me look.{CALLS_BEGIN}{call}{CALL_END}{CALLS_END}{EOS}"
    )


def test_special_markers_are_single_tokens(tokenizer: Any) -> None:
    rendered = _render(tokenizer, V3, CONVERSATION, add_generation_prompt=True)
    ids = tokenizer.encode(rendered, add_special_tokens=False)
    tokens = tokenizer.convert_ids_to_tokens(ids)
    assert "[UNK]" not in tokens
    assert tokens[0] == BOS
    for marker in (USER, ASSISTANT, CALLS_BEGIN, CALL_BEGIN, SEP, CALL_END, CALLS_END, EOS,
                   OUTPUTS_BEGIN, OUTPUT_BEGIN, OUTPUT_END, OUTPUTS_END):  # fmt: skip
        assert marker in tokens, marker
    assert tokenizer.decode(ids) == rendered


# -- DeepSeek-R1 ----------------------------------------------------------------------
def test_r1_opens_the_reasoning_block_and_drops_old_reasoning(tokenizer: Any) -> None:
    messages = [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "<think>\nadd them\n</think>\n\n4"},
        {"role": "user", "content": "Weather in Paris?"},
    ]
    rendered = _render(tokenizer, R1, messages, add_generation_prompt=True, tools=None)
    assert rendered == (
        f"{BOS}{USER}2+2?{ASSISTANT}4{EOS}{USER}Weather in Paris?{ASSISTANT}<think>\n"
    )


def test_r1_calls_and_results_then_reasoning_again(tokenizer: Any) -> None:
    messages = [dict(m) for m in CONVERSATION]
    messages[2]["content"] = "<think>\nTwo cities, two calls.\n</think>\n\n"
    rendered = _render(tokenizer, R1, messages, add_generation_prompt=True)
    system = _system_prompt(rendered)
    assert rendered == (
        f"{BOS}{system}{USER}Weather in Paris and Zürich?{ASSISTANT}{CALLS}{EOS}{OUTPUTS}<think>\n"
    )
    assert _render(tokenizer, R1, messages, add_generation_prompt=False).endswith(OUTPUTS)


# -- vLLM's parsers read what the templates teach -------------------------------------
def _request() -> Any:
    protocol = pytest.importorskip("vllm.entrypoints.openai.chat_completion.protocol")
    return protocol.ChatCompletionRequest(
        model="deepseek-v3", messages=[{"role": "user", "content": "x"}], tools=TOOLS
    )


def test_vllm_deepseek_v3_tool_parser_extracts_the_calls(tokenizer: Any) -> None:
    parsers = pytest.importorskip("vllm.tool_parsers.deepseekv3_tool_parser")
    parser = parsers.DeepSeekV3ToolParser(tokenizer)
    # The markers the template writes are the ones the parser looks for.
    for marker in (parser.tool_calls_start_token, parser.tool_calls_end_token,
                   parser.tool_call_start_token, parser.tool_call_end_token):  # fmt: skip
        assert marker in CALLS
    output = f"Checking both.{CALLS}"
    result = parser.extract_tool_calls(output, _request())
    assert result.tools_called is True
    assert result.content == "Checking both."
    assert [(c.type, c.function.name, json.loads(c.function.arguments))
            for c in result.tool_calls] == [
        ("function", "get_weather", {"city": "Paris"}),
        ("function", "get_weather", {"city": "Zürich"}),
    ]  # fmt: skip


def test_the_format_the_system_prompt_shows_parses(tokenizer: Any) -> None:
    parsers = pytest.importorskip("vllm.tool_parsers.deepseekv3_tool_parser")
    system = _system_prompt(_render(tokenizer, V3, CONVERSATION))
    example = system[system.index(CALLS_BEGIN) :]
    result = parsers.DeepSeekV3ToolParser(tokenizer).extract_tool_calls(example, _request())
    assert result.tools_called and result.tool_calls[0].function.name == "FUNCTION_NAME"
    assert json.loads(result.tool_calls[0].function.arguments) == {"ARGUMENT": "VALUE"}


def test_r1_reasoning_then_calls_through_both_vllm_parsers(tokenizer: Any) -> None:
    reasoning = pytest.importorskip("vllm.reasoning.deepseek_r1_reasoning_parser")
    tools = pytest.importorskip("vllm.tool_parsers.deepseekv3_tool_parser")
    request = _request()
    # The prompt ended with <think>\n, so the output starts inside the reasoning.
    output = f"Two cities, two calls.\n</think>\n\n{CALLS}"
    thought, content = reasoning.DeepSeekR1ReasoningParser(tokenizer).extract_reasoning(
        output, request
    )
    assert thought == "Two cities, two calls.\n"
    assert content is not None
    result = tools.DeepSeekV3ToolParser(tokenizer).extract_tool_calls(content, request)
    assert [c.function.name for c in result.tool_calls] == ["get_weather", "get_weather"]
    assert result.content == "\n\n"


def test_templates_are_utf8_text_without_trailing_spaces() -> None:
    for path in TEMPLATES.glob("*.jinja"):
        text = path.read_text(encoding="utf-8")
        assert text.endswith("\n") and "\t" not in text, path.name
        assert not [line for line in text.splitlines() if line != line.rstrip()], path.name


def test_the_package_ships_only_these_templates() -> None:
    assert {path.name for path in Path(TEMPLATES).glob("*.jinja")} == {V3, R1}
