"""Serving the gateway over HTTPS: TLS 1.2 minimum, modern cipher suites, optional
client-certificate verification, and HSTS on every HTTPS response."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from appliance.config import Settings

__all__ = ["CIPHERS", "HstsMiddleware", "gateway_server_config", "harden", "hardened_context"]

# TLS 1.2 suites with forward secrecy and AEAD only; TLS 1.3 suites are all modern.
CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


def harden(context: ssl.SSLContext) -> ssl.SSLContext:
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION
    return context


def hardened_context(
    config: uvicorn.Config, default: Callable[[], ssl.SSLContext]
) -> ssl.SSLContext:
    """uvicorn's ``ssl_context_factory``: its context, hardened. A module-level
    function so that worker processes (which load their config anew) harden too."""
    return harden(default())


def gateway_server_config(app: Any, settings: Settings, **options: Any) -> uvicorn.Config:
    """A uvicorn config; HTTPS when ``gateway.tls_cert_file`` is set. Loaded here for
    one process; with ``workers > 1`` (``app`` an import string) each worker loads it."""
    gateway = settings.gateway
    tls: dict[str, Any] = {}
    if gateway.tls_cert_file is not None:
        tls = {
            "ssl_certfile": str(gateway.tls_cert_file),
            "ssl_keyfile": str(gateway.tls_key_file),
            "ssl_ciphers": CIPHERS,
            "ssl_context_factory": hardened_context,
        }
        if gateway.tls_client_ca_file is not None:
            tls["ssl_ca_certs"] = str(gateway.tls_client_ca_file)
            tls["ssl_cert_reqs"] = ssl.CERT_OPTIONAL
    config = uvicorn.Config(app, host=gateway.host, port=gateway.port, **tls, **options)
    if not config.use_subprocess:
        config.load()
    return config


class HstsMiddleware:
    """``Strict-Transport-Security`` on responses sent over HTTPS."""

    def __init__(self, app: ASGIApp, max_age_s: int = 31_536_000) -> None:
        self.app = app
        self.value = f"max-age={max_age_s}; includeSubDomains".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("scheme") != "https" or not self.value:
            await self.app(scope, receive, send)
            return

        async def with_hsts(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"strict-transport-security", self.value),
                ]
            await send(message)

        await self.app(scope, receive, with_hsts)
