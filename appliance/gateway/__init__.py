"""The OpenAI-compatible gateway in front of vLLM engines."""

from __future__ import annotations

from appliance.gateway.app import create_app

__all__ = ["create_app"]
