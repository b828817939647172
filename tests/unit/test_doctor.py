"""``appliance doctor``: endpoints outside the allowed networks fail; TLS is reported."""

from __future__ import annotations

from appliance.config import Settings
from appliance.doctor import diagnose

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
