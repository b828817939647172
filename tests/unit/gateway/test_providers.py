"""External providers' answers and credentials as the gateway tells them
(appliance.gateway.providers)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.errors import (
    ConfigurationError,
    EngineUnavailable,
    InvalidRequest,
    ModelNotFound,
    RateLimited,
    UpstreamError,
)
from appliance.gateway.providers import provider_refusal, read_credential
from appliance.settings.egress import ProviderSettings


def provider(key_file: Path) -> ProviderSettings:
    return ProviderSettings.model_validate(
        {
            "name": "openai",
            "base_url": "https://api.openai.com/v1",
            "credential": {"secret_file": str(key_file)},
            "max_classification": "internal",
            "teams": ["research"],
            "models": ["gpt-4.1@openai"],
            "price_input_per_million": "2",
            "price_output_per_million": "8",
            "monthly_budget": {"research": "10"},
            "egress": {"cidrs": ["162.159.140.0/24"]},
        }
    )


def error_body(message: str) -> bytes:
    return json.dumps({"error": {"message": message}}).encode()


@pytest.mark.parametrize(
    ("status", "kind", "code"),
    [
        (400, InvalidRequest, "invalid_request"),
        (404, ModelNotFound, "model_not_found"),
        (401, UpstreamError, "provider_error"),
        (403, UpstreamError, "provider_error"),
        (429, RateLimited, "provider_rate_limited"),
        (500, UpstreamError, "provider_error"),
        (503, EngineUnavailable, "provider_unavailable"),
    ],
)
def test_each_refusal_is_ours_and_names_the_provider(status: int, kind: type, code: str) -> None:
    error = provider_refusal("openai", "gpt-4.1", status, error_body("context too long"), {})
    assert isinstance(error, kind) and error.code == code
    if status == 400:
        assert error.message == "context too long"  # about the request: passed on
    else:
        assert "openai" in error.message and "context too long" not in error.message


def test_the_providers_retry_after_is_passed_on() -> None:
    error = provider_refusal("openai", "m", 429, b"", {"retry-after": "12"})
    assert isinstance(error, RateLimited) and error.retry_after_s == 12
    error = provider_refusal("openai", "m", 429, b"", {"retry-after": "soon"})
    assert isinstance(error, RateLimited) and error.retry_after_s == 60


def test_the_key_is_the_first_line_of_its_file(tmp_path: Path) -> None:
    key_file = tmp_path / "openai.key"
    key_file.write_text("sk-abc\n# ignored\n")
    assert read_credential(provider(key_file)) == "sk-abc"


@pytest.mark.parametrize("content", [None, "", "\n"], ids=["missing", "empty", "blank"])
def test_an_unusable_key_file_keeps_the_gateway_down_naming_the_file(
    tmp_path: Path, content: str | None
) -> None:
    key_file = tmp_path / "openai.key"
    if content is not None:
        key_file.write_text(content)
    with pytest.raises(ConfigurationError, match=str(key_file)) as raised:
        read_credential(provider(key_file))
    assert "openai" in raised.value.message
