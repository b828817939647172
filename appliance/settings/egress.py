"""``external_providers:``: closed frontier APIs an admin allows data to leave for.

Empty by default: nothing leaves. Each entry declares where the provider is, how the
gateway finds its key (a file or an existing Kubernetes Secret, never the key itself),
the highest classification it may receive, who may use it, what it costs and what egress
the deploy paths open for it (destination CIDRs on the base URL's port, or an egress
proxy). The gateway relays requests to them (docs/egress.md, docs/hybrid.md).
"""

from __future__ import annotations

import ipaddress
import re
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from appliance.egress.levels import Classification
from appliance.settings.base import Section
from appliance.settings.egress_policy import ProviderPolicy

__all__ = [
    "INLINE_CREDENTIAL_KEYS",
    "PROVIDER_SECRETS_DIR",
    "ProviderCredential",
    "ProviderEgress",
    "ProviderSettings",
    "validate_providers",
]

# Keys that would put a key in appliance.yaml; refused wherever they appear in a provider.
INLINE_CREDENTIAL_KEYS = frozenset(
    {"api_key", "apikey", "key", "token", "secret", "password", "authorization", "value"}
)
_INLINE_HINT = (
    "inline credentials are refused: put the key in a file readable by the gateway "
    "(credential.secret_file) or in an existing Kubernetes Secret "
    "(credential.secret_name and credential.secret_key)"
)
_NAME = r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$"
_K8S_NAME = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
_DATA_KEY = r"^[-._a-zA-Z0-9]{1,253}$"  # a key of a Secret's data map
_PORT = re.compile(r":(\d+)$")
# Where the chart mounts each Secret a credential names, one directory per Secret
# (helm/appliance/templates/gateway/_pod.tpl): the key is the file <dir>/<name>/<key>.
PROVIDER_SECRETS_DIR = Path("/var/run/appliance/provider-secrets")


def _refuse_inline(data: Any, where: str) -> None:
    if isinstance(data, dict):
        inline = sorted(k for k in data if str(k).lower() in INLINE_CREDENTIAL_KEYS)
        if inline:
            raise ValueError(f"{where}{inline[0]}: {_INLINE_HINT}")


class ProviderCredential(Section):
    """Where the provider's API key is: ``secret_file`` (one line, the key) or an
    existing Kubernetes Secret (``secret_name`` and ``secret_key``), which the chart
    mounts at /var/run/appliance/provider-secrets/<secret_name>. Never the key."""

    secret_file: Path | None = Field(
        default=None, description="File holding the API key (the secrets directory)"
    )
    secret_name: str | None = Field(
        default=None, pattern=_K8S_NAME, description="Existing Kubernetes Secret holding the key"
    )
    secret_key: str | None = Field(
        default=None, pattern=_DATA_KEY, description="Key within that Secret"
    )

    @model_validator(mode="before")
    @classmethod
    def _no_inline(cls, data: Any) -> Any:
        if isinstance(data, str):
            raise ValueError(f"credential: {_INLINE_HINT}")
        _refuse_inline(data, "credential.")
        return data

    @model_validator(mode="after")
    def _one_source(self) -> ProviderCredential:
        in_secret = self.secret_name is not None or self.secret_key is not None
        if self.secret_file is not None and in_secret:
            raise ValueError(
                "credential: give either secret_file or secret_name/secret_key, not both"
            )
        if self.secret_file is None and not in_secret:
            raise ValueError("credential: secret_file or secret_name and secret_key is required")
        if in_secret and (self.secret_name is None or self.secret_key is None):
            raise ValueError("credential: secret_name and secret_key go together")
        if self.secret_file is not None and not self.secret_file.is_absolute():
            raise ValueError(
                f"credential.secret_file: must be an absolute path, got {self.secret_file}"
            )
        return self

    def file(self) -> Path:
        """The file the gateway reads the key from: ``secret_file``, or the Secret's key
        as the chart mounts it, ``PROVIDER_SECRETS_DIR/<secret_name>/<secret_key>``."""
        if self.secret_file is not None:
            return self.secret_file
        # Both set when secret_file is not: checked by _one_source.
        return PROVIDER_SECRETS_DIR / str(self.secret_name) / str(self.secret_key)


def _cidr(value: str, key: str) -> str:
    try:
        network = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValueError(
            f"{key}: {value!r} is not a CIDR with its host bits clear ({exc})"
        ) from exc
    if network.prefixlen == 0:
        raise ValueError(f"{key}: {value} opens every address; name the provider's ranges")
    return str(network)


class ProviderEgress(Section):
    """What the deploy paths open for this provider, from the gateway only: ``cidrs``
    (the provider's address ranges, on the base URL's port) or ``proxy_url`` with
    ``proxy_cidrs`` (the egress proxy's addresses, on the proxy's port). The port itself
    is ``ProviderSettings.egress_port``."""

    cidrs: list[str] = Field(
        default_factory=list,
        description="Provider address ranges, opened on the base_url's port (443 by default)",
    )
    proxy_url: str | None = Field(
        default=None, description="Egress proxy, http(s)://host:port (the port is required)"
    )
    proxy_cidrs: list[str] = Field(
        default_factory=list, description="The egress proxy's addresses (required with proxy_url)"
    )

    @field_validator("cidrs")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        return [_cidr(item, "egress.cidrs") for item in value]

    @field_validator("proxy_cidrs")
    @classmethod
    def _proxy_cidrs(cls, value: list[str]) -> list[str]:
        return [_cidr(item, "egress.proxy_cidrs") for item in value]

    @field_validator("proxy_url")
    @classmethod
    def _proxy_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"egress.proxy_url: must be http(s)://host:port, got {value!r}")
        if parts.username or parts.password:
            raise ValueError(f"egress.proxy_url: {_INLINE_HINT}")
        try:
            has_port = bool(parts.port)  # None (no port) and 0 are refused alike
        except ValueError:  # not a number, or above 65535
            has_port = False
        if not has_port or not _PORT.search(parts.netloc):
            raise ValueError(
                f"egress.proxy_url: must name the port (http://proxy:3128), got {value!r}"
            )
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(f"egress.proxy_url: scheme, host and port only, got {value!r}")
        return f"{parts.scheme}://{parts.netloc}"

    @model_validator(mode="after")
    def _one_way_out(self) -> ProviderEgress:
        if self.cidrs and self.proxy_url:
            raise ValueError("egress: give either cidrs or proxy_url, not both")
        if not self.cidrs and not self.proxy_url:
            raise ValueError("egress: cidrs or proxy_url is required (nothing would be opened)")
        if self.proxy_url and not self.proxy_cidrs:
            raise ValueError(
                "egress.proxy_cidrs: required with proxy_url (NetworkPolicy and nftables "
                "open addresses, not host names)"
            )
        if self.proxy_cidrs and not self.proxy_url:
            raise ValueError("egress.proxy_cidrs: only with proxy_url")
        return self

    @property
    def opened_cidrs(self) -> list[str]:
        """The address ranges opened: the provider's, or the proxy's."""
        return self.proxy_cidrs if self.proxy_url else self.cidrs


class ProviderSettings(Section):
    """One external provider (an OpenAI-compatible API). Base URL shapes:
    OpenAI ``https://api.openai.com/v1``; Azure OpenAI
    ``https://<resource>.openai.azure.com/openai/v1``; Anthropic's OpenAI-compatible
    endpoint ``https://api.anthropic.com/v1``. A provider on another port names it
    (``https://llm.partner.example:8443/v1``); the deploy paths open that port."""

    name: str = Field(pattern=_NAME, description="Provider name (lower case, digits, dashes)")
    kind: Literal["openai-compatible"] = Field(
        default="openai-compatible",
        description="API shape; covers OpenAI, Azure OpenAI (v1 API) and Anthropic's "
        "OpenAI-compatible endpoint",
    )
    base_url: str = Field(
        description="https:// base URL of the API; port 443 unless it names another"
    )
    credential: ProviderCredential
    ca_file: Path | None = Field(
        default=None,
        description="PEM bundle of the CAs that verify the provider's TLS certificate "
        "(a private endpoint, a TLS-inspecting egress proxy); absolute path, mounted by the "
        "admin; null: the system CAs",
    )
    max_classification: Literal["public", "internal", "confidential", "restricted"] = Field(
        description="The highest data classification this provider may receive"
    )
    teams: list[str] = Field(min_length=1, description="Teams allowed to use the provider")
    roles: list[str] = Field(
        default_factory=list,
        description="Roles a caller must also hold one of; empty: any role of an allowed team",
    )
    models: list[str] = Field(
        min_length=1, description="Model names the gateway exposes: <upstream model>@<name>"
    )
    price_input_per_million: Decimal = Field(
        ge=0, description="Price per 1M input (prompt) tokens, in currency"
    )
    price_output_per_million: Decimal = Field(
        ge=0, description="Price per 1M output (completion) tokens, in currency"
    )
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$", description="ISO 4217 code")
    monthly_budget: dict[str, Decimal] = Field(
        description="Team -> spend allowed per calendar month, in currency; '*' covers "
        "every allowed team not listed"
    )
    egress: ProviderEgress
    policy: ProviderPolicy = Field(
        default_factory=ProviderPolicy,
        description="Prompts above max_classification: which detectors may be pseudonymised, "
        "and the in-house fallback model (docs/egress.md)",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_inline(cls, data: Any) -> Any:
        _refuse_inline(data, "")
        return data

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(f"base_url: must be an https:// URL, got {value!r}")
        if parts.username or parts.password:
            raise ValueError(f"base_url: {_INLINE_HINT}")
        try:
            port = parts.port
        except ValueError:  # not a number, or above 65535
            port = 0
        if port == 0 or parts.netloc.endswith(":"):
            raise ValueError(f"base_url: the port must be 1 to 65535, got {value!r}")
        if parts.query or parts.fragment:
            raise ValueError(
                "base_url: no query or fragment (Azure OpenAI: use the /openai/v1 API), "
                f"got {value!r}"
            )
        return value.rstrip("/")

    @field_validator("ca_file")
    @classmethod
    def _ca_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_absolute():
            raise ValueError(f"ca_file: must be an absolute path, got {value}")
        return value

    @field_validator("teams", "roles")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        for item in value:
            if not item.strip() or item == "*":
                raise ValueError(f"{item!r}: name each team or role (no blanks, no '*')")
        if len(set(value)) != len(value):
            raise ValueError(
                "listed twice: " + ", ".join(sorted({v for v in value if value.count(v) > 1}))
            )
        return value

    @field_validator("monthly_budget")
    @classmethod
    def _budget(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        for team, amount in value.items():
            if amount < 0:
                raise ValueError(f"monthly_budget.{team}: must be 0 or more, got {amount}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ProviderSettings:
        suffix = f"@{self.name}"
        for model in self.models:
            if not model.endswith(suffix) or len(model) == len(suffix) or " " in model:
                raise ValueError(
                    f"models: {model!r} must be <upstream model>{suffix} (e.g. gpt-4.1{suffix}), "
                    "so a caller always sees where a request goes"
                )
        if len(set(self.models)) != len(self.models):
            raise ValueError("models: a model is listed twice")
        unknown = sorted(set(self.monthly_budget) - set(self.teams) - {"*"})
        if unknown:
            raise ValueError(
                f"monthly_budget.{unknown[0]}: not one of teams ({', '.join(self.teams)})"
            )
        if "*" not in self.monthly_budget:
            missing = [t for t in self.teams if t not in self.monthly_budget]
            if missing:
                raise ValueError(
                    f"monthly_budget: no budget for team {missing[0]} "
                    "(add it, or '*' for every team)"
                )
        return self

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).hostname or ""

    @property
    def port(self) -> int:
        """The provider's TCP port: the one base_url names, else 443."""
        return urlsplit(self.base_url).port or 443  # a valid port: checked by _base_url

    @property
    def egress_port(self) -> int:
        """The TCP port the deploy paths open: the egress proxy's when there is one (the
        gateway connects to it, not to the provider), else the provider's."""
        if self.egress.proxy_url is None:
            return self.port
        port = urlsplit(self.egress.proxy_url).port
        assert port is not None  # _proxy_url refuses a proxy without its port
        return port

    @property
    def classification(self) -> Classification:
        return Classification.parse(self.max_classification)

    def upstream_model(self, model: str) -> str:
        """``gpt-4.1@openai`` -> ``gpt-4.1``, the name sent to the provider."""
        return model.removesuffix(f"@{self.name}")


def validate_providers(value: list[ProviderSettings]) -> list[ProviderSettings]:
    """Across providers: each name once (exposed models end in ``@name``, so they are
    unique too)."""
    names = [provider.name for provider in value]
    for name in names:
        if names.count(name) > 1:
            raise ValueError(f"name: provider {name!r} is declared twice")
    return value
