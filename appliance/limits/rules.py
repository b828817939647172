"""Which limits apply to a principal: pure resolution from its roles and team."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Limits",
    "estimate_tokens",
    "principal_limits",
    "request_priority",
    "reservation",
    "team_limits",
]


@dataclass(frozen=True)
class Limits:
    """``None`` means unlimited."""

    rpm: int | None = None
    tpm: int | None = None
    concurrency: int | None = None


def _generous(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else max(a, b)


def principal_limits(roles: frozenset[str], rules: Mapping[str, Limits]) -> Limits | None:
    """The most generous limits among the principal's roles that have rules; None when
    no role has one (that principal is not limited)."""
    found = [rules[role] for role in sorted(roles) if role in rules]
    if not found:
        return None
    merged = found[0]
    for other in found[1:]:
        merged = Limits(
            rpm=_generous(merged.rpm, other.rpm),
            tpm=_generous(merged.tpm, other.tpm),
            concurrency=_generous(merged.concurrency, other.concurrency),
        )
    return merged


def team_limits(team: str | None, rules: Mapping[str, Limits]) -> Limits | None:
    if team is None:
        return None
    return rules.get(team, rules.get("*"))


def estimate_tokens(prompt_chars: int, max_tokens: int) -> int:
    """What to reserve before the engine has counted: about 4 characters per prompt
    token (an overestimate for English with modern tokenizers), plus the answer's cap."""
    return max(1, prompt_chars // 4) + max_tokens


def reservation(payload: Mapping[str, Any], default_max_tokens: int) -> int:
    """Tokens to reserve for an OpenAI request body before the engine counts them."""
    prompt = payload.get("messages", payload.get("prompt", ""))
    prompt_chars = len(json.dumps(prompt, ensure_ascii=False))
    cap = payload.get("max_completion_tokens") or payload.get("max_tokens")
    if not isinstance(cap, int) or isinstance(cap, bool) or cap < 1:
        cap = default_max_tokens
    return estimate_tokens(prompt_chars, cap)


def request_priority(roles: frozenset[str], priorities: Mapping[str, int]) -> int | None:
    """vLLM priority (lower runs first): the best among the principal's roles."""
    found = [priorities[role] for role in roles if role in priorities]
    return min(found) if found else None
