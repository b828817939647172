"""The HTTP client to external providers (``external_providers`` in ``appliance.yaml``),
and the one place their failures become our errors (issue #17).

One client per provider, made at start-up only when providers are declared: with none,
nothing in the gateway can open a connection off the premises. Each client:

- reads the provider's key once, from ``credential.secret_file`` or the mounted
  Kubernetes Secret (:meth:`ProviderCredential.file`); a missing or empty file keeps the
  gateway down, naming the file, never the key;
- verifies the provider's certificate (system CAs, or ``ca_file``), never takes a proxy
  from the environment (``trust_env=False``), and goes through ``egress.proxy_url`` when
  one is declared;
- sends the body and the key only: no client header (trace context, cookies, the
  caller's request id) goes out.
"""

from __future__ import annotations

import contextlib
import json
import ssl
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import aiohttp

from appliance.errors import (
    ApplianceError,
    ConfigurationError,
    EngineUnavailable,
    InvalidRequest,
    ModelNotFound,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
)
from appliance.gateway.engine_errors import UNREACHABLE, error_message
from appliance.gateway.upstream import EngineResponse
from appliance.settings.egress import ProviderSettings

__all__ = ["ProviderClient", "ProviderClients", "provider_refusal", "read_credential"]

# A provider's own 429 without Retry-After: try again in a minute.
_DEFAULT_RETRY_S = 60


def read_credential(provider: ProviderSettings) -> str:
    """The provider's key: the first line of its credential file."""
    path = provider.credential.file()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigurationError(
            f"external provider {provider.name}: cannot read its credential file {path} "
            f"({exc.strerror or type(exc).__name__})"
        ) from None
    key = lines[0].strip() if lines else ""
    if not key:
        raise ConfigurationError(
            f"external provider {provider.name}: its credential file {path} is empty"
        )
    return key


@contextmanager
def map_provider_exceptions(provider: str) -> Iterator[None]:
    try:
        yield
    except UNREACHABLE as exc:
        raise EngineUnavailable(
            f"external provider {provider} is not reachable", code="provider_unavailable"
        ) from exc
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise UpstreamTimeout(
            f"external provider {provider} did not answer in time", code="provider_timeout"
        ) from exc
    except aiohttp.ClientError as exc:
        raise UpstreamError(f"external provider {provider} failed", code="provider_error") from exc


def provider_refusal(
    provider: str, model: str, status: int, body: bytes, headers: Mapping[str, str]
) -> ApplianceError:
    """A provider's non-200 answer as our error. Its 4xx messages are about the
    request (passed on); a refused credential is the appliance's fault (502); its 429
    is passed on with its ``Retry-After``."""
    if status in (400, 413, 422):
        refused = f"external provider {provider} rejected the request"
        return InvalidRequest(error_message(body) or refused)
    if status == 404:
        return ModelNotFound(f"external provider {provider} does not serve {model}")
    if status in (401, 403):
        return UpstreamError(
            f"external provider {provider} refused the appliance's credential",
            code="provider_error",
        )
    if status == 429:
        retry = headers.get("retry-after", "")
        return RateLimited(
            f"external provider {provider} is rate limiting the appliance",
            retry_after_s=int(retry) if retry.isdigit() else _DEFAULT_RETRY_S,
            code="provider_rate_limited",
        )
    if status == 503:
        return EngineUnavailable(
            f"external provider {provider} is not available", code="provider_unavailable"
        )
    return UpstreamError(
        f"external provider {provider} failed (status {status})", code="provider_error"
    )


class ProviderClient:
    """Sends requests to one provider; the caller closes each answer."""

    def __init__(
        self, provider: ProviderSettings, *, connect_timeout_s: float, read_timeout_s: float
    ) -> None:
        self.provider = provider
        key = read_credential(provider)
        self._headers = {
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/json",
            "Accept-Encoding": "identity",
        }
        if provider.host.endswith(".openai.azure.com"):  # Azure OpenAI's key header
            self._headers["api-key"] = key
        self._ssl: ssl.SSLContext | bool = True
        if provider.ca_file is not None:
            self._ssl = ssl.create_default_context(cafile=str(provider.ca_file))
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout_s, sock_read=read_timeout_s
        )
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl),
                headers=self._headers,
                timeout=self._timeout,
                auto_decompress=False,
                trust_env=False,  # only the declared proxy, never one from the environment
            )
        return self._session

    async def open(self, path: str, payload: dict[str, Any]) -> EngineResponse:
        """POST ``payload`` to ``base_url + path``; connection failures are our errors."""
        name = self.provider.name
        content = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        with map_provider_exceptions(name):
            response = await self._client().post(
                f"{self.provider.base_url}{path}",
                data=content,
                proxy=self.provider.egress.proxy_url,
            )
        return EngineResponse(
            response,
            model=str(payload.get("model")),
            on_close=lambda: None,
            errors=lambda: map_provider_exceptions(name),
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class ProviderClients:
    """Every declared provider's client, and which provider serves an exposed model."""

    def __init__(
        self,
        providers: list[ProviderSettings],
        *,
        connect_timeout_s: float,
        read_timeout_s: float,
    ) -> None:
        self._clients = {
            p.name: ProviderClient(
                p, connect_timeout_s=connect_timeout_s, read_timeout_s=read_timeout_s
            )
            for p in providers
        }
        self._by_model = {model: p for p in providers for model in p.models}

    def provider_of(self, model: str) -> ProviderSettings | None:
        """The provider exposing ``model`` (``<upstream>@<name>``), or None."""
        return self._by_model.get(model)

    def models(self) -> list[tuple[str, ProviderSettings]]:
        return sorted(self._by_model.items())

    def client(self, provider: str) -> ProviderClient:
        return self._clients[provider]

    async def aclose(self) -> None:
        for client in self._clients.values():
            with contextlib.suppress(Exception):
                await client.aclose()
