"""``appliance doctor``: every endpoint the configuration makes the appliance talk to,
whether each stays inside the allowed networks, whether it is encrypted, whether
engines run with the offline and no-telemetry environment, and where the audit keys
are. The resolver is injected."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from appliance.audit.hsm_admin import key_backend_findings
from appliance.audit.retention import RetentionPolicy, retention_findings
from appliance.audit.spool_check import spool_findings
from appliance.config import Settings
from appliance.engine.launch import (
    OFFLINE_ENV,
    LaunchSpec,
    embedding_spec_from_settings,
    spec_from_settings,
)

__all__ = [
    "Endpoint",
    "Finding",
    "Report",
    "diagnose",
    "local_engine_findings",
    "provider_findings",
    "system_resolver",
]

Resolver = Callable[[str], list[str]]


@dataclass(frozen=True)
class Endpoint:
    kind: str
    name: str
    url: str
    host: str
    tls: str  # "verified", "mutual", "off", "n/a"
    addresses: tuple[str, ...] = ()
    inside: bool | None = None  # None: could not resolve


@dataclass(frozen=True)
class Finding:
    level: str  # "ok", "warn", "fail"
    message: str


@dataclass
class Report:
    endpoints: list[Endpoint] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(f.level == "fail" for f in self.findings)


def system_resolver(host: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return []
    return sorted({str(info[4][0]) for info in infos})


def _inside(addresses: list[str], networks: list[str]) -> bool:
    nets = [ipaddress.ip_network(n, strict=False) for n in networks]
    return all(any(ipaddress.ip_address(a) in net for net in nets) for a in addresses)


def _configured(settings: Settings) -> list[tuple[str, str, str, str]]:
    """(kind, name, url, tls) of every configured endpoint."""
    found: list[tuple[str, str, str, str]] = []
    engine_tls = settings.gateway.engine_tls
    for route in settings.effective_upstreams():
        tls = "off"
        if route.url.startswith("https://"):
            tls = "mutual" if engine_tls.cert_file is not None else "verified"
        kind = "engine" if route.kind == "chat" else f"{route.kind} engine"
        found.append((kind, route.model, route.url, tls))
    database = settings.database_url
    if not database.startswith("sqlite"):
        from sqlalchemy.engine import make_url

        parsed = make_url(database)
        sslmode = str(parsed.query.get("sslmode", ""))
        tls = "verified" if sslmode in ("verify-full", "verify-ca") else "off"
        url = f"{parsed.drivername}://{parsed.host}:{parsed.port or 5432}"
        found.append(("database", parsed.database or "", url, tls))
    if settings.oidc.enabled and settings.oidc.server_url:
        url = settings.oidc.server_url
        found.append(("keycloak", settings.oidc.realm, url,
                      "verified" if url.startswith("https://") else "off"))  # fmt: skip
    if settings.limits.store == "redis" and settings.limits.redis_url is not None:
        url = settings.limits.redis_url.get_secret_value()
        safe = f"{urlsplit(url).scheme}://{urlsplit(url).hostname}:{urlsplit(url).port or 6379}"
        found.append(
            ("redis", "limits", safe, "verified" if url.startswith("rediss://") else "off")
        )
    if settings.telemetry.otlp_endpoint:
        url = settings.telemetry.otlp_endpoint
        found.append(
            ("collector", "otlp", url, "verified" if url.startswith("https://") else "off")
        )
    if settings.audit.key_provider == "vault" and settings.audit.vault_url:
        url = settings.audit.vault_url
        found.append(("vault", settings.audit.vault_key, url,
                      "verified" if url.startswith("https://") else "off"))  # fmt: skip
    return found


def _loopback(addresses: tuple[str, ...]) -> bool:
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


def diagnose(settings: Settings, *, resolve: Resolver = system_resolver) -> Report:
    report = Report()
    networks = settings.network.allowed_networks
    for kind, name, url, tls in _configured(settings):
        host = urlsplit(url).hostname or ""
        addresses = resolve(host)
        inside = _inside(addresses, networks) if addresses else None
        endpoint = Endpoint(kind, name, url, host, tls, tuple(addresses), inside)
        report.endpoints.append(endpoint)
        if inside is None:
            report.findings.append(Finding("warn", f"{kind} {name}: {host} does not resolve"))
        elif not inside:
            report.findings.append(Finding(
                "fail", f"{kind} {name}: {host} ({', '.join(addresses)}) is outside the "
                "allowed networks (network.allowed_networks)",
            ))  # fmt: skip
        if tls == "off" and not _loopback(endpoint.addresses):
            report.findings.append(Finding("warn", f"{kind} {name}: {url} is not encrypted"))
    report.findings.extend(local_engine_findings(settings))
    gateway = settings.gateway
    if gateway.tls_cert_file is None:
        level = "ok" if _loopback(tuple(resolve(gateway.host))) else "warn"
        report.findings.append(Finding(level, f"gateway serves plain HTTP on {gateway.host}"))
    else:
        report.findings.append(Finding("ok", "gateway serves HTTPS (TLS 1.2 minimum, HSTS)"))
    if settings.telemetry.otlp_endpoint is None:
        report.findings.append(Finding("ok", "traces: no OTLP export configured"))
    report.findings.extend(provider_findings(settings, resolve=resolve))
    # Where the audit keys are; a PKCS#11 token is logged in to and inspected.
    for level, message in key_backend_findings(settings):
        report.findings.append(Finding(level, message))
    # Retention below the floor without a stated reason keeps the gateway down.
    policy = RetentionPolicy.from_settings(settings.audit.retention)
    report.findings.extend(Finding(level, text) for level, text in retention_findings(policy))
    report.findings.extend(Finding(level, text) for level, text in spool_findings(settings))
    return report


def _engine_line(label: str, spec: LaunchSpec) -> list[Finding]:
    """What a local engine serves and where, and whether its environment is offline."""
    runner = "generate runner"
    if spec.pooling is not None:
        pooling = spec.pooling
        how = f"{pooling.pooling_type or 'model default'} pooling"
        how += ", normalised" if pooling.normalize else ", not normalised"
        convert = f", --convert {pooling.convert}" if pooling.convert != "none" else ""
        runner = f"pooling runner{convert}, {how}"
    found = [Finding("ok", f"{label} {spec.served_model_name}: local vLLM ({runner}) at "
                     f"{spec.url}, {spec.device}, max-model-len {spec.max_model_len}")]  # fmt: skip
    env = spec.environment({}, cpu_count=1)
    missing = [k for k, v in OFFLINE_ENV.items() if env.get(k) != v]
    if missing:
        found.append(Finding("fail", f"{label} env lacks {', '.join(missing)}"))
    else:
        found.append(
            Finding("ok", f"{label} env: " + " ".join(f"{k}={v}" for k, v in OFFLINE_ENV.items()))
        )
    return found


def local_engine_findings(settings: Settings) -> list[Finding]:
    """One pair of lines per engine ``appliance up`` starts: the chat engine and the
    embedding engine (offline and no-telemetry environment included)."""
    found: list[Finding] = []
    if settings.engine.enabled:
        found += _engine_line("engine", spec_from_settings(settings, "-"))
    if settings.embedding_engine_enabled:
        found += _engine_line("embedding engine", embedding_spec_from_settings(settings, "-"))
    if not found:
        found.append(Finding("ok", "local engines: none (gateway.upstreams only)"))
    return found


def provider_findings(settings: Settings, *, resolve: Resolver = system_resolver) -> list[Finding]:
    """One line per external provider: its host, ceiling, teams and exactly what egress
    the deploy paths open for it; "external providers: none" when nothing may leave."""
    providers = settings.external_providers
    if not providers:
        return [Finding("ok", "external providers: none")]
    found: list[Finding] = []
    for p in providers:
        egress = p.egress
        opened = ", ".join(egress.opened_cidrs) + f" on {p.egress_port}/tcp"
        way = f"via proxy {egress.proxy_url} ({opened})" if egress.proxy_url else opened
        roles = f", roles {', '.join(p.roles)}" if p.roles else ""
        found.append(Finding("warn", (
            f"external provider {p.name}: {p.host}, max classification "
            f"{p.max_classification}, teams {', '.join(p.teams)}{roles}; egress opens "
            f"{way} from the gateway only"
        )))  # fmt: skip
        if egress.proxy_url is None:
            addresses = resolve(p.host)
            outside = [a for a in addresses if not _inside([a], egress.cidrs)]
            if outside:
                found.append(Finding("warn", (
                    f"external provider {p.name}: {p.host} resolves to {', '.join(outside)}, "
                    "outside egress.cidrs: the firewall will drop those connections"
                )))  # fmt: skip
    return found
