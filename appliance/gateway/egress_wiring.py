"""Building the gateway's external-provider services from settings, once at start-up.

Only called when ``external_providers`` is not empty: with none, no provider client,
scanner or budget store exists, and no code path can send anything off the premises.
"""

from __future__ import annotations

from appliance.config import Settings
from appliance.egress.budget import EgressBudget, MemorySpendStore, SpendStore
from appliance.egress.defaults import ScannerConfig, build_scanner
from appliance.egress.scanner import Scanner
from appliance.egress.sitefiles import load_dictionary
from appliance.gateway.egress_call import EgressServices
from appliance.gateway.providers import ProviderClients
from appliance.settings.egress_policy import ContentScanSettings

__all__ = ["build_egress", "content_scanner"]


def content_scanner(scan: ContentScanSettings) -> Scanner:
    """The scanner ``classification.scan`` describes; reads its site dictionaries."""
    dictionaries = tuple(
        load_dictionary(d.file, name=d.name, level=d.level, label=d.label)
        for d in scan.dictionaries
    )
    return build_scanner(
        ScannerConfig(
            detectors=None if scan.detectors is None else frozenset(scan.detectors),
            countries=None if scan.countries is None else frozenset(scan.countries),
            levels=dict(scan.levels),
            dictionaries=dictionaries,
        )
    )


def _spend_store(settings: Settings) -> SpendStore:
    """Redis when the limits share one (several gateways share one budget), else this
    process's memory."""
    limits = settings.limits
    if limits.store == "redis" and limits.redis_url is not None:
        from appliance.egress.budget_redis import RedisSpendStore

        return RedisSpendStore.from_url(
            limits.redis_url.get_secret_value(), ca_file=limits.redis_ca_file
        )
    return MemorySpendStore()


def build_egress(settings: Settings) -> EgressServices | None:
    """None when no provider is declared; raises ConfigurationError on an unreadable
    credential or dictionary (the gateway stays down, naming the file)."""
    if not settings.external_providers:
        return None
    gateway = settings.gateway
    clients = ProviderClients(
        settings.external_providers,
        connect_timeout_s=gateway.connect_timeout_s,
        read_timeout_s=gateway.upstream_timeout_s,
    )
    return EgressServices(
        clients=clients,
        scanner=content_scanner(settings.classification.scan),
        budget=EgressBudget(_spend_store(settings)),
    )
