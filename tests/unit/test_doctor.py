"""``appliance doctor``: endpoints outside the allowed networks fail; TLS is reported."""

from __future__ import annotations

from appliance.config import Settings
from appliance.doctor import Finding, diagnose, provider_findings

ADDRESSES = {
    "engine-a.internal": ["10.0.0.5"],
    "engine-b.example.com": ["93.184.216.34"],
    "db.internal": ["10.0.0.9"],
    "sso.internal": ["10.0.0.7"],
    "127.0.0.1": ["127.0.0.1"],
}


def resolve(host: str) -> list[str]:
    return ADDRESSES.get(host, [])


def test_flags_outside_endpoints_and_reports_tls() -> None:
    settings = Settings(
        engine={"enabled": False},
        database={"url": "postgresql+psycopg://app@db.internal/app?sslmode=verify-full"},
        gateway={"upstreams": [
            {"model": "a", "url": "https://engine-a.internal:8100"},
            {"model": "b", "url": "http://engine-b.example.com:8100"},
            {"model": "c", "url": "http://ghost.internal:8100"},
        ], "engine_tls": {"ca_file": "ca.crt", "cert_file": "g.crt", "key_file": "g.key"}},
        oidc={"enabled": True, "server_url": "https://sso.internal"},
        telemetry={"otlp_endpoint": "http://127.0.0.1:4318/v1/traces"},
    )  # fmt: skip
    report = diagnose(settings, resolve=resolve)
    by_name = {(e.kind, e.name): e for e in report.endpoints}
    assert by_name[("engine", "a")].tls == "mutual" and by_name[("engine", "a")].inside
    assert by_name[("engine", "b")].inside is False
    assert by_name[("engine", "c")].inside is None
    assert by_name[("database", "app")].tls == "verified"
    assert by_name[("keycloak", "appliance")].inside
    assert by_name[("collector", "otlp")].inside
    assert report.failed
    messages = [f.message for f in report.findings if f.level == "fail"]
    assert len(messages) == 1 and "engine-b.example.com" in messages[0]
    warnings = " ".join(f.message for f in report.findings if f.level == "warn")
    assert "ghost.internal" in warnings and "not encrypted" in warnings


def test_default_embedded_configuration_is_clean() -> None:
    report = diagnose(Settings(), resolve=resolve)
    assert not report.failed
    assert any("HF_HUB_OFFLINE=1" in f.message for f in report.findings)


# -- external providers (issue #17) -------------------------------------------------------

PROVIDER = {
    "name": "openai",
    "base_url": "https://api.openai.com/v1",
    "credential": {"secret_file": "/etc/appliance/secrets/openai.key"},
    "max_classification": "internal",
    "teams": ["research", "marketing"],
    "models": ["gpt-4.1@openai"],
    "price_input_per_million": 2,
    "price_output_per_million": 8,
    "monthly_budget": {"*": 100},
    "egress": {"cidrs": ["162.159.140.0/24"]},
}


def test_no_external_providers_by_default() -> None:
    report = diagnose(Settings(), resolve=resolve)
    assert [f for f in report.findings if "external provider" in f.message] == [
        Finding("ok", "external providers: none")
    ]


def test_each_provider_shows_what_egress_opens() -> None:
    proxied = {
        **PROVIDER,
        "name": "azure",
        "base_url": "https://contoso.openai.azure.com/openai/v1",
        "max_classification": "confidential",
        "teams": ["legal"],
        "roles": ["appliance-user"],
        "models": ["gpt-4.1@azure"],
        "egress": {"proxy_url": "http://proxy.internal:3128", "proxy_cidrs": ["10.9.0.10/32"]},
    }
    addresses = {**ADDRESSES, "api.openai.com": ["162.159.140.245"]}
    settings = Settings(external_providers=[PROVIDER, proxied])
    lines = [f.message for f in provider_findings(settings, resolve=lambda h: addresses[h])]
    assert lines == [
        "external provider openai: api.openai.com, max classification internal, teams "
        "research, marketing; egress opens 162.159.140.0/24 on 443/tcp from the gateway only",
        "external provider azure: contoso.openai.azure.com, max classification confidential, "
        "teams legal, roles appliance-user; egress opens via proxy http://proxy.internal:3128 "
        "(10.9.0.10/32 on 3128/tcp) from the gateway only",
    ]
    report = diagnose(settings, resolve=lambda h: addresses.get(h, []))
    assert not report.failed
    assert "external providers: none" not in [f.message for f in report.findings]
    # A provider is not an on-premises endpoint: it is not checked against allowed_networks.
    assert not [e for e in report.endpoints if e.host.endswith(("openai.com", "azure.com"))]


def test_a_provider_on_its_own_port_shows_that_port() -> None:
    partner = {**PROVIDER, "base_url": "https://llm.partner.example:8443/v1"}
    settings = Settings.model_validate({"external_providers": [partner]})
    (line,) = provider_findings(settings, resolve=lambda h: ["162.159.140.9"])
    assert line.message.endswith("egress opens 162.159.140.0/24 on 8443/tcp from the gateway only")


def test_warns_when_the_provider_resolves_outside_its_cidrs() -> None:
    settings = Settings(external_providers=[PROVIDER])
    findings = provider_findings(settings, resolve=lambda h: ["162.159.140.9", "104.18.7.1"])
    assert findings[-1] == Finding(
        "warn",
        "external provider openai: api.openai.com resolves to 104.18.7.1, outside "
        "egress.cidrs: the firewall will drop those connections",
    )
