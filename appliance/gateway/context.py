"""Per-request facts the audit record needs, gathered as the request goes through."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from appliance.identity.principal import Principal

__all__ = ["RequestContext", "request_context"]


@dataclass
class RequestContext:
    request_id: str
    started: float = field(default_factory=time.monotonic)
    principal: Principal | None = None
    model: str | None = None
    params: dict[str, Any] | None = None
    # Set once a request record exists: later failures write a completion record
    # instead of a denial.
    admitted: bool = False

    def elapsed_ms(self) -> int:
        return int((time.monotonic() - self.started) * 1000)


def request_context(request: Request) -> RequestContext:
    context = getattr(request.state, "context", None)
    if context is None:
        context = RequestContext(request_id=request.scope.get("request_id", "unknown"))
        request.state.context = context
    return context
