"""The HTTP client to vLLM engines, and the one place their failures are translated
into :mod:`appliance.errors` (as httpx maps httpcore errors).

The client is aiohttp: on this hot path it costs about a quarter of httpx's CPU per
request (0.5 ms against 2.0 ms measured against the fake engine on the 2-core dev VM,
see docs/benchmarks.md)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

import aiohttp

from appliance.config import EngineTlsSettings, RoutingSettings
from appliance.errors import (
    EngineUnavailable,
    ModelNotFound,
)
from appliance.gateway.engine_errors import UNREACHABLE, map_upstream_exceptions
from appliance.gateway.pool import Replica, ReplicaPool, ReplicaState
from appliance.gateway.routing import affinity_key, resolve_model

__all__ = [
    "EngineResponse",
    "Upstream",
    "UpstreamAnswer",
    "engine_ssl_context",
]

logger = logging.getLogger("appliance.gateway.upstream")

# Observes each attempt at a replica: (model, replica url, outcome) for metrics.
AttemptObserver = Callable[[str, str, str], None]
# Observes each health check of a replica: (model, replica url, healthy) for metrics.
HealthObserver = Callable[[str, str, bool], None]


def engine_ssl_context(tls: EngineTlsSettings) -> ssl.SSLContext | None:
    """TLS 1.2+ context verifying engines against ``ca_file`` and presenting the gateway's
    client certificate (mutual TLS); None when nothing is configured (system CAs)."""
    if tls.ca_file is None and tls.cert_file is None:
        return None
    context = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.cert_file is not None and tls.key_file is not None:
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    return context


_IDLE_CONNECTION_S = 4.0
# Control calls (loading a LoRA adapter reads it from disk): a generous bound.
_CONTROL_TIMEOUT = aiohttp.ClientTimeout(total=120.0)

# Failures before the engine sent any response: nothing reached the client, so another
# replica may take the request (a connection the engine closed while it shut down, too).
_BEFORE_ANSWER = (*UNREACHABLE, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)


class UpstreamAnswer(Protocol):
    """What the relay reads an answer through: an engine's (:class:`EngineResponse`) or
    an external provider's, re-identified (:mod:`appliance.gateway.egress_call`)."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    async def aread(self) -> bytes: ...

    def aiter_raw(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class EngineResponse:
    """An engine's answer, open until :meth:`aclose`: status, headers, then the body,
    read whole or chunk by chunk as it arrives. Errors while reading are
    :class:`~appliance.errors.ApplianceError` (mapped here, not by callers)."""

    def __init__(
        self,
        response: aiohttp.ClientResponse,
        *,
        model: str,
        on_close: Callable[[], None],
        errors: Callable[[], AbstractContextManager[None]] | None = None,
    ) -> None:
        self._response = response
        self._model = model
        self._on_close: Callable[[], None] | None = on_close
        # How a failure while reading is told: the engine's (default) or a provider's.
        self._errors = errors or (lambda: map_upstream_exceptions(model))

    @property
    def status_code(self) -> int:
        return self._response.status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers

    async def aread(self) -> bytes:
        with self._errors():
            return await self._response.read()

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        """Body bytes as they arrive, with no re-chunking."""
        with self._errors():
            async for chunk in self._response.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        """Done with the answer. An unfinished body closes the connection, which aborts
        the request in vLLM; a finished one goes back to the pool. Idempotent."""
        try:
            if self._response.content.at_eof():
                self._response.release()
            else:
                self._response.close()
        finally:
            if self._on_close is not None:
                self._on_close()
                self._on_close = None


class Upstream:
    """Routes a model name to one of its engine replicas and sends requests there.

    ``routes`` maps each model to its replicas' base URLs (one URL or several). Requests
    that fail before the engine answered (connection refused, 503) fail over to the
    next replica; once an answer has started, it is never retried."""

    def __init__(
        self,
        routes: Mapping[str, str | Sequence[str]],
        *,
        api_key: str,
        connect_timeout_s: float,
        read_timeout_s: float,
        routing: RoutingSettings | None = None,
        tls: EngineTlsSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_attempt: AttemptObserver | None = None,
        on_health: HealthObserver | None = None,
    ):
        self.routing = routing or RoutingSettings()
        self.pool = ReplicaPool(
            {m: [u] if isinstance(u, str) else list(u) for m, u in routes.items()},
            failure_threshold=self.routing.failure_threshold,
            circuit_open_s=self.routing.circuit_open_s,
            affinity_max_imbalance=self.routing.affinity_max_imbalance,
        )
        self._clock = clock
        self._on_attempt = on_attempt
        self._on_health = on_health
        self._api_key = api_key
        # Connect within connect_timeout_s; then no gap between body bytes may exceed
        # read_timeout_s (a long answer streams for as long as it keeps coming).
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout_s, sock_read=read_timeout_s
        )
        self._ssl: ssl.SSLContext | bool = True
        if tls is not None and (context := engine_ssl_context(tls)) is not None:
            self._ssl = context
        self._session: aiohttp.ClientSession | None = None
        self._health_task: asyncio.Task[None] | None = None

    def _client(self) -> aiohttp.ClientSession:
        """The session, made on first use: aiohttp binds it to the running loop."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                # Idle connections are dropped after 4 s, before vLLM's own 5 s keep-alive
                # (VLLM_HTTP_TIMEOUT_KEEP_ALIVE) closes them: a POST never goes out on a
                # connection the engine is closing (aiohttp's default is 15 s).
                connector=aiohttp.TCPConnector(
                    limit=0, ssl=self._ssl, keepalive_timeout=_IDLE_CONNECTION_S
                ),
                headers={"Authorization": f"Bearer {self._api_key}", "Accept-Encoding": "identity"},
                timeout=self._timeout,
                auto_decompress=False,
                trust_env=False,  # never a proxy from the environment: engines are on-prem
            )
        return self._session

    def models(self) -> list[str]:
        return self.pool.models()

    def serves(self, model: str) -> bool:
        return model in self.pool.models()

    def resolve(self, model: str, *, roles: frozenset[str], headers: Mapping[str, str]) -> str:
        """The served model a request for ``model`` goes to (aliases, policy routes)."""
        return resolve_model(
            model,
            roles=roles,
            headers=headers,
            aliases=self.routing.aliases,
            routes=self.routing.policy_routes,
        )

    def _observe(self, replica: Replica, outcome: str) -> None:
        if self._on_attempt is not None:
            self._on_attempt(replica.model, replica.url, outcome)

    async def open_stream(
        self,
        model: str,
        path: str,
        payload: dict[str, Any],
        *,
        request_id: str,
        headers: Mapping[str, str] | None = None,
    ) -> EngineResponse:
        """POST ``payload`` to a replica of the model; the caller must close the answer."""
        key = affinity_key(payload) if self.routing.prefix_affinity else None
        order = self.pool.order(model, now_s=self._clock(), affinity_key=key)
        if not order:
            raise ModelNotFound(f"model {model} is not served")
        content = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        sent_headers = {
            **(headers or {}),
            "Content-Type": "application/json",
            "X-Request-Id": request_id,
        }
        client = self._client()
        for attempt, replica in enumerate(order):
            last = attempt == len(order) - 1
            self.pool.started(replica)
            try:
                response = await client.post(
                    f"{replica.url}{path}", data=content, headers=sent_headers
                )
            except _BEFORE_ANSWER as exc:
                self.pool.finished(replica)
                self.pool.failed(replica, now_s=self._clock())
                self._observe(replica, "unreachable")
                if last:
                    with map_upstream_exceptions(model):
                        raise
                logger.warning(
                    "replica %s of %s failed before answering (%s); failing over",
                    replica.url, model, type(exc).__name__,
                )  # fmt: skip
                continue
            except BaseException:
                self.pool.finished(replica)
                self._observe(replica, "error")
                with map_upstream_exceptions(model):
                    raise
            answer = EngineResponse(
                response,
                model=model,
                on_close=lambda replica=replica: self.pool.finished(replica),  # type: ignore[misc]
            )
            if response.status == 503 and not last:
                await answer.aclose()
                self.pool.failed(replica, now_s=self._clock())
                self._observe(replica, "unavailable")
                logger.warning("replica %s of %s not ready; failing over", replica.url, model)
                continue
            if response.status < 500:
                self.pool.succeeded(replica)
            self._observe(replica, "ok" if response.status < 500 else "error")
            return answer
        raise EngineUnavailable(f"no engine for {model} is reachable")  # pragma: no cover

    async def _check(self, replica: Replica) -> bool:
        try:
            async with self._client().get(
                f"{replica.url}/health", timeout=aiohttp.ClientTimeout(total=5.0)
            ) as response:
                healthy = response.status == 200
        except (TimeoutError, aiohttp.ClientError):
            healthy = False
        self.pool.checked(replica, healthy, now_s=self._clock())
        if self._on_health is not None:
            self._on_health(replica.model, replica.url, healthy)
        return healthy

    async def _check_all(self, replicas: Sequence[Replica]) -> list[bool]:
        # Side by side: one engine that never answers must not delay the others' checks
        # (nor /readyz, which a load balancer times out) by 5 s each.
        return list(await asyncio.gather(*(self._check(replica) for replica in replicas)))

    async def healthy(self, model: str) -> bool:
        """Whether any replica of ``model`` answers its health check now."""
        return any(await self._check_all(self.pool.replicas(model)))

    async def call_replica(
        self, replica: Replica, method: str, path: str, payload: dict[str, Any] | None = None
    ) -> tuple[int, bytes]:
        """One control call to one replica (LoRA load/unload, its model list), no
        failover: the status and body. Connection failures map as for requests."""
        with map_upstream_exceptions(replica.model):
            async with self._client().request(
                method, f"{replica.url}{path}", json=payload, timeout=_CONTROL_TIMEOUT
            ) as response:
                return response.status, await response.read()

    async def check_replicas(self) -> list[ReplicaState]:
        """Health-check every replica of every model now and report each, in the order
        they are configured."""
        replicas = self.pool.replicas()
        results = await self._check_all(replicas)
        now_s = self._clock()
        # The check's own answer, not the pool's flag, which a request may flip meanwhile.
        return [
            dataclasses.replace(replica.state(now_s), healthy=healthy)
            for replica, healthy in zip(replicas, results, strict=True)
        ]

    async def _health_loop(self, interval_s: float) -> None:
        # Check at once, then every interval: the replicas' health (and the
        # appliance_engine_up gauge) is known from the start, not one interval later.
        while True:
            await self._check_all(self.pool.replicas())
            await asyncio.sleep(interval_s)

    def start(self) -> None:
        """Start active health checks (``routing.health_interval_s``; 0: none)."""
        interval = self.routing.health_interval_s
        if interval > 0 and self._health_task is None:
            self._health_task = asyncio.get_running_loop().create_task(self._health_loop(interval))

    async def drain(self, timeout_s: float) -> bool:
        """Wait until no request is in flight, at most ``timeout_s``; say whether it did."""
        deadline = self._clock() + timeout_s
        while self.pool.outstanding() > 0:
            if self._clock() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def aclose(self) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
            self._health_task = None
        if self._session is not None:
            await self._session.close()
            self._session = None
