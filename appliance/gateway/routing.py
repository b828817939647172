"""Which model a request goes to (aliases, policy routes) and which conversation it
belongs to (the prefix-affinity key). Pure."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from appliance.config import PolicyRoute

__all__ = ["affinity_key", "resolve_model"]


def resolve_model(
    model: str,
    *,
    roles: frozenset[str],
    headers: Mapping[str, str],
    aliases: Mapping[str, str],
    routes: Sequence[PolicyRoute],
) -> str:
    """Alias first (``deepseek`` -> ``deepseek-v3``), then the first policy route whose
    role and header conditions both hold."""
    target = aliases.get(model, model)
    for route in routes:
        if route.model not in (model, target):
            continue
        if route.role is not None and route.role not in roles:
            continue
        if route.header is not None:
            name, _, value = route.header.partition("=")
            if headers.get(name.lower()) != value:
                continue
        return route.to
    return target


def affinity_key(payload: Mapping[str, Any], *, max_chars: int = 4096) -> str | None:
    """A digest of what a conversation starts with: its system prompt(s), else its first
    message, or a completion prompt's start. Later turns of one conversation and requests
    sharing a system prompt share the key, so they meet vLLM's prefix cache."""
    messages = payload.get("messages")
    if isinstance(messages, list) and messages:
        head: list[Any] = []
        for message in messages:
            if not (isinstance(message, dict) and message.get("role") in ("system", "developer")):
                break
            head.append(message)
        head = head or messages[:1]
        text = json.dumps(head, sort_keys=True, ensure_ascii=False)[:max_chars]
    elif isinstance(payload.get("prompt"), str):
        text = str(payload["prompt"])[:max_chars]
    else:
        return None
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
