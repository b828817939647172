"""appliance/errors.py: one error tree, rendered the OpenAI way."""

from __future__ import annotations

import pytest

import appliance.errors as errors
from appliance.errors import ApplianceError, RateLimited

# class -> (HTTP status, OpenAI error type, default code)
EXPECTED: dict[type[ApplianceError], tuple[int, str, str]] = {
    errors.ApplianceError: (500, "server_error", "internal_error"),
    errors.InvalidRequest: (400, "invalid_request_error", "invalid_request"),
    errors.AuthenticationFailed: (401, "authentication_error", "invalid_api_key"),
    errors.PermissionDenied: (403, "permission_error", "model_not_allowed"),
    errors.ModelNotFound: (404, "invalid_request_error", "model_not_found"),
    errors.RequestTooLarge: (413, "invalid_request_error", "request_too_large"),
    errors.UnsupportedMediaType: (415, "invalid_request_error", "unsupported_media_type"),
    errors.RequestHeadersTooLarge: (431, "invalid_request_error", "headers_too_large"),
    errors.RateLimited: (429, "rate_limit_error", "rate_limit_exceeded"),
    errors.UpstreamError: (502, "api_error", "engine_error"),
    errors.EngineUnavailable: (503, "api_error", "engine_unavailable"),
    errors.AuditUnavailable: (503, "api_error", "audit_unavailable"),
    errors.UpstreamTimeout: (504, "api_error", "engine_timeout"),
    errors.ConfigurationError: (500, "server_error", "internal_error"),
    errors.EngineStartError: (500, "server_error", "internal_error"),
    errors.ManifestError: (500, "server_error", "internal_error"),
    errors.VerificationError: (500, "server_error", "internal_error"),
    errors.BundleError: (500, "server_error", "internal_error"),
}


def all_subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub} | all_subclasses(sub)
    return found


def make(cls: type[ApplianceError], message: str, **kwargs: object) -> ApplianceError:
    if cls is RateLimited:
        return RateLimited(message, retry_after_s=7, **kwargs)  # type: ignore[arg-type]
    return cls(message, **kwargs)  # type: ignore[arg-type]


def test_table_covers_every_exported_error() -> None:
    exported = {getattr(errors, name) for name in errors.__all__}
    assert exported == set(EXPECTED)
    # No subclass defined in the package hides outside __all__.
    own = {c for c in all_subclasses(ApplianceError) if c.__module__ == errors.__name__}
    assert own <= exported


@pytest.mark.parametrize("cls", list(EXPECTED), ids=lambda c: c.__name__)
def test_renders_openai_error_shape(cls: type[ApplianceError]) -> None:
    status, error_type, code = EXPECTED[cls]
    error = make(cls, "something went wrong")

    assert isinstance(error, ApplianceError)
    assert error.status_code == status
    assert error.to_openai() == {
        "error": {
            "message": "something went wrong",
            "type": error_type,
            "param": None,
            "code": code,
        }
    }
    assert str(error) == "something went wrong"


@pytest.mark.parametrize("cls", list(EXPECTED), ids=lambda c: c.__name__)
def test_code_can_be_overridden_per_instance(cls: type[ApplianceError]) -> None:
    error = make(cls, "m", code="custom_code")
    assert error.to_openai()["error"]["code"] == "custom_code"
    # The override does not leak into the class or other instances.
    assert make(cls, "m").code == EXPECTED[cls][2]


@pytest.mark.parametrize(
    "cls", [c for c in EXPECTED if c is not RateLimited], ids=lambda c: c.__name__
)
def test_param_is_rendered(cls: type[ApplianceError]) -> None:
    error = cls("bad model", param="model")
    assert error.to_openai()["error"]["param"] == "model"


def test_rate_limited_carries_retry_after() -> None:
    error = RateLimited("slow down", retry_after_s=42)
    assert error.retry_after_s == 42
    assert error.status_code == 429
    assert error.to_openai()["error"]["type"] == "rate_limit_error"


def test_rate_limited_requires_retry_after() -> None:
    with pytest.raises(TypeError):
        RateLimited("slow down")  # type: ignore[call-arg]


def test_errors_can_be_raised_and_caught_as_base() -> None:
    with pytest.raises(ApplianceError) as caught:
        raise errors.ModelNotFound("no such model", param="model")
    assert caught.value.status_code == 404
