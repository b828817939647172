"""``create_app(settings)``: the gateway as a FastAPI application, no globals."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import anyio.to_thread
from fastapi import FastAPI
from opentelemetry.sdk.trace.export import SpanExporter

from appliance import __version__
from appliance.audit.forward_status import read_forward_status
from appliance.audit.retention import RetentionPolicy, enforce_floor
from appliance.audit.retention_store import override_record
from appliance.audit.sink import AuditSink
from appliance.audit.spool_writer import SpoolingWriter
from appliance.audit.store import SqlAuditStore
from appliance.audit.wiring import audit_writer, open_audit_log
from appliance.config import Settings
from appliance.db.engine import create_db_engine
from appliance.gateway.adapter_control import AdapterSync
from appliance.gateway.adapter_models import load_adapter_catalog
from appliance.gateway.egress_wiring import build_egress
from appliance.gateway.errors import install_error_handlers
from appliance.gateway.middleware import (
    HeaderLimitMiddleware,
    RequestIdMiddleware,
    UnexpectedErrorMiddleware,
)
from appliance.gateway.routes import (
    admin_router,
    audit_router,
    auth_router,
    console_router,
    conversations_router,
    health_router,
    openai_aliases_router,
    openai_router,
    retention_router,
    ui_admin_router,
    ui_router,
)
from appliance.gateway.services import GatewayServices, utc_now
from appliance.gateway.tls import HstsMiddleware
from appliance.gateway.upstream import Upstream
from appliance.identity.apikey_cache import ApiKeyCache
from appliance.identity.apikeys import ApiKeyService
from appliance.identity.keycloak import KeycloakGateway, build_verifier
from appliance.identity.session_sql import SqlSessions, session_sealing_key
from appliance.identity.sessions import SessionStore
from appliance.keys.deployment import DeploymentSecrets, deployment_secrets
from appliance.limits import build_limiter
from appliance.telemetry import (
    GatewayMetrics,
    Telemetry,
    build_tracer_provider,
    metrics_router,
)
from appliance.ui.render import StaticAssets

__all__ = ["create_app"]


def create_app(
    settings: Settings,
    *,
    secrets: DeploymentSecrets | None = None,
    audit_sink: AuditSink | None = None,
    span_exporter: SpanExporter | None = None,
) -> FastAPI:
    """Build the gateway. The database must already be migrated (``appliance db
    upgrade``, which ``appliance up`` runs). ``audit_sink`` and ``span_exporter`` let
    tests swap the edges."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A retention period below the floor keeps the gateway down, unless a reason
        # is stated; then the override is recorded below, once per start.
        retention = RetentionPolicy.from_settings(settings.audit.retention)
        overridden = enforce_floor(retention)
        resolved = secrets or deployment_secrets(settings)
        metrics = GatewayMetrics()
        telemetry = Telemetry(
            settings.telemetry,
            metrics,
            build_tracer_provider(settings.telemetry, exporter=span_exporter),
        )
        database = create_db_engine(settings.database_url)
        # The SIEM forwarder runs as its own process; /metrics reports its lag.
        forward_store = SqlAuditStore(database)
        metrics.watch_forwarder(partial(read_forward_status, settings, forward_store))
        replicas: dict[str, list[str]] = {}
        for route in settings.effective_upstreams():  # a model listed twice: two replicas
            replicas.setdefault(route.model, []).append(route.url)
        upstream = Upstream(
            replicas,
            api_key=resolved.engine_api_key,
            connect_timeout_s=settings.gateway.connect_timeout_s,
            read_timeout_s=settings.gateway.upstream_timeout_s,
            routing=settings.gateway.routing,
            tls=settings.gateway.engine_tls,
            on_attempt=metrics.upstream_attempt,
            on_health=metrics.engine_checked,
        )
        upstream.start()
        # The sealed audit log, unless a test swapped in its own sink. Opening it checks
        # the latest signed checkpoint; a log that fails that check keeps the gateway down.
        log_writer = None
        audit: AuditSink
        if audit_sink is None:
            audit_log = await anyio.to_thread.run_sync(open_audit_log, settings, database)
            audit = log_writer = audit_writer(settings, audit_log)
            await log_writer.start()
            if isinstance(log_writer, SpoolingWriter):
                spooling = log_writer
                metrics.watch_spool(spooling.pending_bytes, lambda: spooling.drain_failures)
        else:
            audit = audit_sink
        if overridden:
            await audit.append(override_record(retention, overridden, now=utc_now()))
        api_keys = ApiKeyService(database, resolved.api_key_pepper)
        app.state.services = GatewayServices(
            settings=settings,
            database=database,
            api_keys=api_keys,
            api_key_cache=ApiKeyCache(
                api_keys, ttl_s=settings.auth.api_key_cache_s, clock_s=time.monotonic
            ),
            audit=audit,
            upstream=upstream,
            limiter=(
                build_limiter(settings.limits, on_refusal=metrics.limit_refused)
                if settings.limits.enabled
                else None
            ),
            telemetry=telemetry,
            adapters=await anyio.to_thread.run_sync(load_adapter_catalog, settings),
            egress=await anyio.to_thread.run_sync(build_egress, settings),
        )
        keycloak = None
        if settings.oidc.enabled:
            keycloak = KeycloakGateway(settings.oidc)
            app.state.services.keycloak = keycloak
            app.state.services.identity = build_verifier(settings.oidc, keycloak)
        # Browser sessions (Keycloak sign-in, or an API key at /ui/login) live in the
        # database: shared by every gateway process, kept across restarts.
        app.state.services.sessions = SessionStore(
            ttl_s=settings.oidc.session_ttl_s,
            idle_s=settings.oidc.session_idle_s,
            backend=SqlSessions(database, session_sealing_key(resolved.api_key_pepper)),
        )
        # Each gateway process follows the engines' adapters (loaded/unloaded by an admin).
        adapter_sync = AdapterSync(app.state.services)
        adapter_sync.start()
        try:
            yield
        finally:
            await adapter_sync.aclose()
            if keycloak is not None:
                await keycloak.aclose()
            if log_writer is not None:
                await log_writer.stop()
            # Draining: requests in flight finish before the engines' client closes.
            await upstream.drain(settings.gateway.routing.drain_timeout_s)
            await upstream.aclose()
            if app.state.services.limiter is not None:
                await app.state.services.limiter.store.aclose()
            if app.state.services.egress is not None:
                await app.state.services.egress.aclose()
            telemetry.shutdown()
            database.dispose()

    app = FastAPI(
        title="Sovereign inference appliance",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,  # no CDN-hosted Swagger UI: the appliance is air-gapped
        redoc_url=None,
    )
    install_error_handlers(app)
    # Added last = outermost: the request id wraps everything, including the 500s.
    app.add_middleware(UnexpectedErrorMiddleware)
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(HeaderLimitMiddleware)
    if settings.gateway.tls_cert_file is not None and settings.gateway.hsts_max_age_s:
        app.add_middleware(HstsMiddleware, max_age_s=settings.gateway.hsts_max_age_s)
    app.include_router(health_router)
    app.include_router(metrics_router)
    app.include_router(openai_router)
    app.include_router(openai_aliases_router)
    app.include_router(admin_router)
    app.include_router(auth_router)
    app.include_router(audit_router)
    app.include_router(ui_router)
    app.include_router(conversations_router)
    app.include_router(console_router)
    app.include_router(retention_router)
    app.include_router(ui_admin_router)
    app.mount("/ui/static", StaticAssets(), name="ui-static")
    return app
