"""One error tree for the whole appliance.

Every error a client can see is an :class:`ApplianceError` subclass that carries its
HTTP status and the OpenAI error ``type`` and ``code``; the gateway renders all of them
with one handler as ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

__all__ = [
    "ApplianceError",
    "AuditUnavailable",
    "AuthenticationFailed",
    "BundleError",
    "ConfigurationError",
    "EngineStartError",
    "EngineUnavailable",
    "InvalidRequest",
    "ManifestError",
    "ModelNotFound",
    "PermissionDenied",
    "RateLimited",
    "RequestHeadersTooLarge",
    "RequestTooLarge",
    "UnsupportedMediaType",
    "UpstreamError",
    "UpstreamTimeout",
    "VerificationError",
]


class ApplianceError(Exception):
    """Base of every error the appliance raises on purpose."""

    status_code: int = 500
    error_type: str = "server_error"
    code: str = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def to_openai(self) -> dict[str, dict[str, str | None]]:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(ApplianceError):
    status_code = 400
    error_type = "invalid_request_error"
    code = "invalid_request"


class AuthenticationFailed(ApplianceError):
    status_code = 401
    error_type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(ApplianceError):
    status_code = 403
    error_type = "permission_error"
    code = "model_not_allowed"


class ModelNotFound(ApplianceError):
    status_code = 404
    error_type = "invalid_request_error"
    code = "model_not_found"


class RequestTooLarge(ApplianceError):
    status_code = 413
    error_type = "invalid_request_error"
    code = "request_too_large"


class UnsupportedMediaType(ApplianceError):
    status_code = 415
    error_type = "invalid_request_error"
    code = "unsupported_media_type"


class RequestHeadersTooLarge(ApplianceError):
    status_code = 431
    error_type = "invalid_request_error"
    code = "headers_too_large"


class RateLimited(ApplianceError):
    status_code = 429
    error_type = "rate_limit_error"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after_s: int, code: str | None = None):
        super().__init__(message, code=code)
        self.retry_after_s = retry_after_s


class UpstreamError(ApplianceError):
    """The engine answered, but not with something we can serve (5xx, garbage)."""

    status_code = 502
    error_type = "api_error"
    code = "engine_error"


class EngineUnavailable(ApplianceError):
    """No engine for the model could be reached."""

    status_code = 503
    error_type = "api_error"
    code = "engine_unavailable"


class AuditUnavailable(ApplianceError):
    """The audit record could not be made durable, so the request is refused."""

    status_code = 503
    error_type = "api_error"
    code = "audit_unavailable"


class UpstreamTimeout(ApplianceError):
    status_code = 504
    error_type = "api_error"
    code = "engine_timeout"


class ConfigurationError(ApplianceError):
    """The configuration is invalid; the message names the offending key."""


class EngineStartError(ApplianceError):
    """An engine process failed to start; the message carries the engine's own error."""


class ManifestError(ApplianceError):
    """A model directory does not match its sha256 manifest."""


class BundleError(ApplianceError):
    """A release bundle cannot be made, verified or installed; the message names the
    cause (the file, the key, the platform, the disk)."""


class VerificationError(ApplianceError):
    """A cryptographic or integrity check failed."""
