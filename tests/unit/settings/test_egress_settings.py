"""``external_providers``: empty by default; every key validated, no key ever inline."""

from __future__ import annotations

import copy
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from appliance.config import Settings, load_settings
from appliance.egress import Classification
from appliance.errors import ConfigurationError
from appliance.settings.egress import PROVIDER_SECRETS_DIR

OPENAI: dict[str, Any] = {
    "name": "openai",
    "base_url": "https://api.openai.com/v1/",
    "credential": {"secret_file": "/etc/appliance/secrets/openai.key"},
    "max_classification": "internal",
    "teams": ["research", "marketing"],
    "roles": ["appliance-user"],
    "models": ["gpt-4.1@openai", "gpt-4.1-mini@openai"],
    "price_input_per_million": 2,
    "price_output_per_million": "8.00",
    "monthly_budget": {"research": 500, "*": 100},
    "egress": {"cidrs": ["162.159.140.0/24", "2606:4700::/32"]},
}


def _with(**change: Any) -> dict[str, Any]:
    provider = copy.deepcopy(OPENAI)
    provider.update(change)
    return provider


def _refused(provider: dict[str, Any], *needles: str) -> str:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(external_providers=[provider])
    message = str(caught.value)
    for needle in needles:
        assert needle in message, message
    return message


def test_nothing_leaves_by_default() -> None:
    assert Settings().external_providers == []
    assert Settings().model_dump()["external_providers"] == []


def test_a_declared_provider() -> None:
    (provider,) = load_settings(external_providers=[OPENAI]).external_providers
    assert provider.kind == "openai-compatible"
    assert provider.base_url == "https://api.openai.com/v1"
    assert provider.host == "api.openai.com"
    assert provider.classification is Classification.INTERNAL
    assert provider.upstream_model("gpt-4.1@openai") == "gpt-4.1"
    assert provider.price_output_per_million == Decimal("8.00")
    assert provider.currency == "USD"
    assert provider.port == 443
    assert provider.egress_port == 443
    assert provider.ca_file is None  # the system CAs
    assert provider.credential.file() == Path("/etc/appliance/secrets/openai.key")
    assert provider.egress.opened_cidrs == ["162.159.140.0/24", "2606:4700::/32"]


@pytest.mark.parametrize(
    ("base_url", "port"),
    [
        ("https://my-resource.openai.azure.com/openai/v1", 443),  # Azure OpenAI, v1 API
        ("https://api.anthropic.com/v1", 443),  # Anthropic's OpenAI-compatible endpoint
        ("https://api.openai.com:443/v1", 443),
        ("https://llm.partner.example:8443/v1", 8443),  # a private endpoint on its own port
        ("https://10.20.0.5:9443", 9443),
        ("https://[2001:db8::5]:8443/v1", 8443),
    ],
)
def test_base_url_shapes(base_url: str, port: int) -> None:
    (provider,) = load_settings(external_providers=[_with(base_url=base_url)]).external_providers
    assert provider.base_url == base_url
    assert provider.port == port
    assert provider.egress_port == port  # egress.cidrs: opened on the provider's port


@pytest.mark.parametrize(
    ("base_url", "port"),
    [("https://api.openai.com/v1", 443), ("https://llm.example:8443/v1", 8443)],
)
def test_through_an_egress_proxy(base_url: str, port: int) -> None:
    """The gateway connects to the proxy, so its port is opened, whatever the provider's."""
    egress = {"proxy_url": "http://proxy.corp.internal:3128", "proxy_cidrs": ["10.9.0.10/32"]}
    (provider,) = load_settings(
        external_providers=[_with(base_url=base_url, egress=egress)]
    ).external_providers
    assert provider.egress_port == 3128
    assert provider.port == port
    assert provider.egress.opened_cidrs == ["10.9.0.10/32"]


def test_a_private_ca_bundle() -> None:
    ca_file = "/etc/appliance/tls/partner-ca.pem"
    (provider,) = load_settings(external_providers=[_with(ca_file=ca_file)]).external_providers
    assert provider.ca_file == Path(ca_file)


def test_a_kubernetes_secret_reference() -> None:
    credential = {"secret_name": "frontier-keys", "secret_key": "openai"}
    (provider,) = load_settings(
        external_providers=[_with(credential=credential)]
    ).external_providers
    assert provider.credential.secret_name == "frontier-keys"
    # Where the chart mounts the Secret: one directory per Secret, one file per key.
    assert PROVIDER_SECRETS_DIR == Path("/var/run/appliance/provider-secrets")
    assert provider.credential.file() == PROVIDER_SECRETS_DIR / "frontier-keys" / "openai"


@pytest.mark.parametrize(
    ("provider", "needle"),
    [
        (_with(api_key="sk-proj-abc123"), "api_key: inline credentials are refused"),
        (_with(credential="sk-proj-abc123"), "credential: inline credentials are refused"),
        (_with(credential={"value": "sk-x"}), "credential.value: inline credentials are refused"),
        (_with(credential={"api_key": "sk-x"}), "credential.api_key: inline credentials"),
        (_with(base_url="https://user:sk-x@api.openai.com/v1"), "base_url: inline credentials"),
    ],
)
def test_refuses_inline_keys(provider: dict[str, Any], needle: str) -> None:
    message = _refused(provider, needle, "credential.secret_file", "secret_name")
    assert "sk-" not in message.replace("sk-x@", "")  # the key is not echoed


@pytest.mark.parametrize(
    ("change", "needles"),
    [
        ({"base_url": "http://api.openai.com/v1"}, ["base_url", "https://"]),
        ({"base_url": "https://api.openai.com:0/v1"}, ["base_url", "1 to 65535"]),
        ({"base_url": "https://api.openai.com:65536/v1"}, ["base_url", "1 to 65535"]),
        ({"base_url": "https://api.openai.com:https/v1"}, ["base_url", "1 to 65535"]),
        ({"base_url": "https://api.openai.com:/v1"}, ["base_url", "1 to 65535"]),
        ({"base_url": "https://api.openai.com:8443/v1#x"}, ["base_url", "fragment"]),
        ({"ca_file": "certs/partner-ca.pem"}, ["ca_file", "absolute"]),
        ({"base_url": "https://x.openai.azure.com/openai?api-version=1"}, ["base_url", "query"]),
        ({"kind": "anthropic"}, ["kind", "openai-compatible"]),
        ({"name": "Open AI"}, ["name"]),
        ({"max_classification": "secret"}, ["max_classification"]),
        ({"teams": []}, ["teams"]),
        ({"teams": ["*"]}, ["teams", "name each team"]),
        ({"roles": ["a", "a"]}, ["roles", "listed twice: a"]),
        ({"models": ["gpt-4.1"]}, ["models", "gpt-4.1@openai"]),
        ({"models": ["gpt-4.1@azure"]}, ["models", "<upstream model>@openai"]),
        ({"price_input_per_million": -1}, ["price_input_per_million"]),
        ({"currency": "euro"}, ["currency"]),
        ({"monthly_budget": {"research": 5}}, ["monthly_budget", "team marketing"]),
        ({"monthly_budget": {"*": 5, "sales": 1}}, ["monthly_budget.sales", "not one of teams"]),
        ({"monthly_budget": {"*": -5}}, ["monthly_budget.*", "0 or more"]),
        ({"credential": {}}, ["credential", "secret_file or secret_name"]),
        ({"credential": {"secret_name": "keys"}}, ["credential", "go together"]),
        ({"credential": {"secret_file": "keys/openai"}}, ["credential.secret_file", "absolute"]),
        (
            {"credential": {"secret_file": "/k", "secret_name": "s", "secret_key": "k"}},
            ["credential", "not both"],
        ),
        ({"egress": {}}, ["egress", "cidrs or proxy_url is required"]),
        ({"egress": {"cidrs": ["0.0.0.0/0"]}}, ["egress.cidrs", "every address"]),
        ({"egress": {"cidrs": ["10.0.0.1/8"]}}, ["egress.cidrs", "host bits"]),
        ({"egress": {"cidrs": ["api.openai.com"]}}, ["egress.cidrs", "not a CIDR"]),
        (
            {"egress": {"cidrs": ["1.2.3.0/24"], "proxy_url": "http://p:3128"}},
            ["egress", "not both"],
        ),
        ({"egress": {"proxy_url": "http://p:3128"}}, ["egress.proxy_cidrs", "required"]),
        (
            {"egress": {"proxy_url": "http://p", "proxy_cidrs": ["10.0.0.1/32"]}},
            ["egress.proxy_url", "port"],
        ),
        (
            {"egress": {"proxy_url": "http://p:0", "proxy_cidrs": ["10.0.0.1/32"]}},
            ["egress.proxy_url", "port"],
        ),
        (
            {"egress": {"proxy_url": "socks5://p:1080", "proxy_cidrs": ["10.0.0.1/32"]}},
            ["egress.proxy_url"],
        ),
        ({"egress": {"cidrs": ["1.2.3.0/24"], "proxy_cidrs": ["10.0.0.1/32"]}}, ["only with"]),
        ({"budget": 5}, ["budget", "Extra inputs"]),
    ],
)
def test_refuses_with_the_key_named(change: dict[str, Any], needles: list[str]) -> None:
    _refused(_with(**change), "external_providers.0", *needles)


def test_names_are_unique() -> None:
    with pytest.raises(ConfigurationError, match="provider 'openai' is declared twice"):
        load_settings(external_providers=[OPENAI, OPENAI])
