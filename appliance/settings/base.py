"""What every settings section shares: unknown keys are errors, URLs are http(s)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["Section", "http_base_url"]


class Section(BaseModel):
    """A section of ``appliance.yaml``; a misspelt key fails validation."""

    model_config = ConfigDict(extra="forbid")


def http_base_url(value: str | None) -> str | None:
    """Validator body: an http(s) URL without a trailing slash, or None."""
    if value is not None and not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return None if value is None else value.rstrip("/")
