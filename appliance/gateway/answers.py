"""What an engine answered, gathered for the audit: each choice's text and reasoning,
the tool calls, embeddings' count and dimension, a ranking; and which of it goes into
the completion record's sealed content and which into its clear params."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from appliance.audit.records import storable_names
from appliance.gateway.scoring import ranking_of

__all__ = [
    "REASONING_FIELDS",
    "Answer",
    "AnswerStream",
    "answer_content",
    "answer_of",
    "answer_params",
    "answer_texts",
    "delta_texts",
    "function_name",
]

# Where a reasoning parser (``--reasoning-parser deepseek_r1`` ...) puts the thinking
# text of a message or delta: ``reasoning_content`` (DeepSeek's API, vLLM before 0.13),
# ``reasoning`` (vLLM 0.32). The first non-empty one counts, so a server that sends
# both does not record the text twice.
REASONING_FIELDS = ("reasoning_content", "reasoning")


def function_name(item: Any) -> Any:
    """``item["function"]["name"]`` of a tool, named tool choice or tool call."""
    function = item.get("function") if isinstance(item, dict) else None
    return function.get("name") if isinstance(function, dict) else None


@dataclass(frozen=True)
class Answer:
    """What the engine answered, for the audit: the text of each choice (in index
    order), its reasoning (one per choice in index order, ``""`` for a choice without
    any; empty when no choice reasoned) and every tool call, each with its ``choice``
    index, ``id``, ``type`` and ``function`` (``name``, ``arguments``). For embeddings
    only how many vectors and their dimension: never a vector. For rerank and score the
    ``ranking``: each result's document index and score. For ``/v1/responses`` also the
    ``output`` items as the engine sent them and the rest of the Response object (both
    None when the response never completed), from which a later
    ``previous_response_id`` rebuilds the conversation and ``GET /v1/responses/{id}``
    answers."""

    texts: list[str] = field(default_factory=list)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    embeddings: int | None = None
    dimensions: int | None = None
    output: list[Any] | None = None
    response: dict[str, Any] | None = None  # the Response object but its output
    ranking: list[dict[str, Any]] | None = None  # rerank/score: [{"index", "score"}]
    reasoning: list[str] = field(default_factory=list)

    def tool_names(self) -> list[str]:
        return storable_names(function_name(call) for call in self.tool_calls)


def _choice_text(choice: Any, part: str) -> tuple[int, str] | None:
    if not isinstance(choice, dict):
        return None
    index = choice.get("index", 0)
    text = choice.get("text")
    holder = choice.get(part)
    if isinstance(holder, dict):
        text = holder.get("content")
    if not isinstance(index, int) or not isinstance(text, str):
        return None
    return index, text


def _choice_reasoning(choice: Any, part: str) -> tuple[int, str] | None:
    """A choice's reasoning text (whole, or a delta's piece); None when it has none."""
    if not isinstance(choice, dict) or not isinstance(choice.get(part), dict):
        return None
    index = choice.get("index", 0)
    texts = (choice[part].get(key) for key in REASONING_FIELDS)
    text = next((t for t in texts if isinstance(t, str) and t), None)
    if not isinstance(index, int) or text is None:
        return None
    return index, text


def _per_choice(texts: dict[int, Any], reasoning: dict[int, str]) -> list[str]:
    """The reasoning of every choice seen, in index order; [] when none reasoned."""
    if not reasoning:
        return []
    return [reasoning.get(i, "") for i in sorted({*texts, *reasoning})]


def _choice_tool_calls(choice: Any, part: str) -> tuple[int, list[Any]] | None:
    if not isinstance(choice, dict) or not isinstance(choice.get(part), dict):
        return None
    index = choice.get("index", 0)
    calls = choice[part].get("tool_calls")
    if not isinstance(index, int) or not isinstance(calls, list):
        return None
    return index, calls


def _texts_by_choice(answer: dict[str, Any]) -> dict[int, str]:
    texts: dict[int, str] = {}
    for choice in answer["choices"]:
        found = _choice_text(choice, "message")
        if found is not None:
            texts[found[0]] = texts.get(found[0], "") + found[1]
    return texts


def answer_texts(answer: dict[str, Any] | None) -> list[str] | None:
    """The text of each choice of a non-streamed answer (chat or completion)."""
    if answer is None or not isinstance(answer.get("choices"), list):
        return None
    texts = _texts_by_choice(answer)
    return [texts[i] for i in sorted(texts)]


def _dimension(vector: Any) -> int | None:
    """A vector's length: a float list's, or a base64 one's float32 count."""
    if isinstance(vector, list):
        return len(vector)
    if isinstance(vector, str):
        padding = vector[-2:].count("=")
        return (len(vector) * 3 // 4 - padding) // 4
    return None


def _embeddings_of(answer: dict[str, Any]) -> Answer | None:
    data = answer.get("data")
    if not isinstance(data, list):
        return None
    first = data[0] if data and isinstance(data[0], dict) else {}
    return Answer(embeddings=len(data), dimensions=_dimension(first.get("embedding")))


def answer_of(answer: dict[str, Any] | None) -> Answer | None:
    """A non-streamed answer's texts, reasoning and tool calls, or its embeddings' count
    and dimension; None when it has neither choices nor data."""
    if answer is not None and "choices" not in answer:
        ranking = ranking_of(answer)
        return _embeddings_of(answer) if ranking is None else Answer(ranking=ranking)
    if answer is None or not isinstance(answer.get("choices"), list):
        return None
    texts = _texts_by_choice(answer)
    calls: list[dict[str, Any]] = []
    reasoning: dict[int, str] = {}
    for choice in answer["choices"]:
        found = _choice_tool_calls(choice, "message")
        if found is not None:
            index, made = found
            calls.extend({"choice": index, **call} for call in made if isinstance(call, dict))
        thought = _choice_reasoning(choice, "message")
        if thought is not None:
            reasoning[thought[0]] = reasoning.get(thought[0], "") + thought[1]
    return Answer(
        texts=[texts[i] for i in sorted(texts)],
        tool_calls=calls,
        reasoning=_per_choice(texts, reasoning),
    )


def delta_texts(chunk: dict[str, Any] | None, into: dict[int, list[str]]) -> None:
    """Add a streamed chunk's text deltas to ``into`` (choice index -> pieces)."""
    if chunk is None or not isinstance(chunk.get("choices"), list):
        return
    for choice in chunk["choices"]:
        found = _choice_text(choice, "delta")
        if found is not None:
            into.setdefault(found[0], []).append(found[1])


class AnswerStream:
    """A streamed answer put together from its chunks: text and reasoning deltas joined
    per choice, tool call deltas merged per (choice, call index) as OpenAI's clients do
    (``id`` and ``type`` taken when present, ``name`` and ``arguments`` pieces joined)."""

    def __init__(self) -> None:
        self._texts: dict[int, list[str]] = {}
        self._reasoning: dict[int, list[str]] = {}
        self._calls: dict[tuple[int, int], dict[str, Any]] = {}

    def add(self, chunk: dict[str, Any] | None) -> None:
        if chunk is None or not isinstance(chunk.get("choices"), list):
            return
        for choice in chunk["choices"]:
            text = _choice_text(choice, "delta")
            if text is not None:
                self._texts.setdefault(text[0], []).append(text[1])
            thought = _choice_reasoning(choice, "delta")
            if thought is not None:
                self._reasoning.setdefault(thought[0], []).append(thought[1])
            calls = _choice_tool_calls(choice, "delta")
            if calls is not None:
                for delta in calls[1]:
                    if isinstance(delta, dict):
                        self._merge(calls[0], delta)

    def _merge(self, choice: int, delta: dict[str, Any]) -> None:
        position = delta.get("index", 0)
        if not isinstance(position, int):
            return
        call = self._calls.setdefault(
            (choice, position),
            {"choice": choice, "id": None, "type": "function",
             "function": {"name": "", "arguments": ""}},
        )  # fmt: skip
        for key in ("id", "type"):
            if isinstance(delta.get(key), str):
                call[key] = delta[key]
        function = delta.get("function")
        if isinstance(function, dict):
            for key in ("name", "arguments"):
                if isinstance(function.get(key), str):
                    call["function"][key] += function[key]

    def answer(self) -> Answer:
        reasoning = {i: "".join(pieces) for i, pieces in self._reasoning.items()}
        return Answer(
            texts=["".join(self._texts[i]) for i in sorted(self._texts)],
            tool_calls=[self._calls[key] for key in sorted(self._calls)],
            reasoning=_per_choice(self._texts, reasoning),
        )


def answer_content(answer: Answer | None) -> dict[str, Any] | None:
    """The sealed content of a completion record: the texts, a response's output items,
    the reasoning when the answer has any, and the tool calls with their arguments when
    it made any; for embeddings their count and dimension only (a vector can be
    inverted back to much of its text, so none is stored). A receipt's answer
    commitment covers the ``response`` texts alone, not the reasoning."""
    if answer is None:
        return None
    if answer.embeddings is not None:
        return {"embeddings": answer.embeddings, "dimensions": answer.dimensions}
    if answer.ranking is not None:
        return {"ranking": answer.ranking}
    content: dict[str, Any] = {"response": answer.texts}
    if answer.reasoning:
        content["reasoning"] = answer.reasoning
    if answer.output is not None:
        content["output"] = answer.output
    if answer.response is not None:
        content["object"] = answer.response
    if answer.tool_calls:
        content["tool_calls"] = answer.tool_calls
    return content


def answer_params(answer: Answer | None) -> dict[str, Any] | None:
    """Clear-text params of a completion record: the names of the tools the answer
    called (never their arguments) and ``reasoning: true`` when it reasoned (never the
    text); or how many embeddings it holds and their dimension."""
    if answer is None:
        return None
    if answer.embeddings is not None:
        return {"embeddings": answer.embeddings, "dimensions": answer.dimensions}
    if answer.ranking is not None:
        return {"results": len(answer.ranking)}
    params: dict[str, Any] = {}
    names = answer.tool_names()
    if names:
        params["tool_calls"] = names
    if answer.reasoning:
        params["reasoning"] = True
    return params or None
