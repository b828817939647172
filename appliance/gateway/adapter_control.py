"""LoRA adapters loaded and unloaded in the running engines, and the gateway's adapter
catalogue kept in step with them.

The engines are the source of truth: what each replica lists in ``GET /v1/models`` is
what it serves. :func:`adapter_states` re-scans the model store (so an adapter imported
after start shows up; each adapter is checked against its manifest again whenever one
of its files changed, and one that fails is never routed), asks every replica, and swaps in a new
:class:`~appliance.gateway.adapter_models.AdapterCatalog`: an adapter loaded on a
replica routes; one in the store that no replica has loaded answers 404
``adapter_not_loaded``. :class:`AdapterSync` does this every ``SYNC_INTERVAL_S`` in
each gateway process, so the other workers and replicas of the gateway follow an
admin's load or unload within that interval (the process that did it follows at once;
an unloaded adapter is refused by the engine meanwhile).

Loading sends only a directory of the local, verified adapter store (checked against
its manifest right before), never a hub name, to every replica of the model
(``POST /v1/load_lora_adapter``); unloading sends ``/v1/unload_lora_adapter``. Both
need ``VLLM_ALLOW_RUNTIME_LORA_UPDATING`` in the engine (set where LoRA is on, see
:mod:`appliance.engine.launch`). Each act is recorded before the engines are called.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread
from starlette.requests import Request

from appliance.adapters.serving import served_adapter_base
from appliance.adapters.store import StoredAdapter, list_adapters, verify_adapter
from appliance.audit.records import AuditEvent
from appliance.errors import (
    ApplianceError,
    InvalidRequest,
    ManifestError,
    ModelNotFound,
    UpstreamError,
)
from appliance.gateway.acts import write_act
from appliance.gateway.adapter_models import AdapterCatalog, ServedAdapter
from appliance.gateway.context import request_context
from appliance.gateway.services import GatewayServices
from appliance.identity.principal import Principal

__all__ = [
    "SYNC_INTERVAL_S",
    "AdapterState",
    "AdapterSync",
    "adapter_states",
    "load_adapter",
    "unload_adapter",
]

logger = logging.getLogger(__name__)
SYNC_INTERVAL_S = 30.0
_LOAD = "/v1/load_lora_adapter"
_UNLOAD = "/v1/unload_lora_adapter"


@dataclass(frozen=True)
class AdapterState:
    """One adapter of the store, and on how many of its model's replicas it is loaded
    (``None``: no replica answered)."""

    parent: str
    adapter: StoredAdapter
    replicas: int
    loaded_on: int | None
    verified: bool = True

    @property
    def model(self) -> str:
        return f"{self.parent}:{self.adapter.name}"

    @property
    def served(self) -> ServedAdapter:
        return ServedAdapter(
            model=self.model,
            parent=self.parent,
            name=self.adapter.name,
            teams=frozenset(self.adapter.teams),
            manifest_sha256=self.adapter.manifest_sha256,
        )


def _files(path: Path) -> object:
    return sorted(
        (entry.name, stat.st_size, stat.st_mtime_ns)
        for entry in path.iterdir()
        if entry.is_file() and (stat := entry.stat())
    )


def _verified(services: GatewayServices, adapter: StoredAdapter) -> bool:
    """Whether the adapter's files match its manifest: checked again whenever a file
    changed since the last check (a team added by hand is never served)."""
    key = str(adapter.path)
    try:
        files = _files(adapter.path)
        if services.adapter_verified.get(key) == files:
            return True
        verify_adapter(adapter)
    except (ManifestError, OSError) as exc:
        services.adapter_verified.pop(key, None)
        logger.warning("adapter %s is not served: %s", adapter.qualified_name, exc)
        return False
    services.adapter_verified[key] = files
    return True


def _scan(services: GatewayServices) -> list[tuple[str, StoredAdapter, bool]]:
    """Every served model's adapters in the store now, as (served model, adapter,
    verified)."""
    settings = services.settings
    found: list[tuple[str, StoredAdapter, bool]] = []
    for parent in services.upstream.models():
        try:
            stored = list_adapters(settings.model_store, served_adapter_base(settings, parent))
        except (ApplianceError, OSError) as exc:
            logger.warning("adapters of %s are not served: %s", parent, exc)
            continue
        found.extend((parent, adapter, _verified(services, adapter)) for adapter in stored)
    return found


def _listed(body: bytes) -> set[str]:
    data = json.loads(body).get("data", [])
    return {str(card["id"]) for card in data if isinstance(card, dict) and "id" in card}


async def _engine_models(services: GatewayServices, parent: str) -> list[set[str] | None]:
    """What each replica of ``parent`` lists now; None where one did not answer."""

    async def one(replica: Any) -> set[str] | None:
        try:
            status, body = await services.upstream.call_replica(replica, "GET", "/v1/models")
            return _listed(body) if status == 200 else None
        except (ApplianceError, ValueError, AttributeError, KeyError):
            return None

    replicas = services.upstream.pool.replicas(parent)
    return list(await asyncio.gather(*(one(replica) for replica in replicas)))


async def adapter_states(services: GatewayServices) -> list[AdapterState]:
    """Every adapter of the store with its load state; the catalogue follows it. Where
    no replica of a model answered, its adapters keep their state in the catalogue."""
    scanned = await anyio.to_thread.run_sync(_scan, services)
    parents = sorted({parent for parent, _, _ in scanned})
    listings = await asyncio.gather(*(_engine_models(services, p) for p in parents))
    by_parent = dict(zip(parents, listings, strict=True))
    states: list[AdapterState] = []
    for parent, adapter, verified in scanned:
        answered = [models for models in by_parent[parent] if models is not None]
        loaded_on = sum(f"{parent}:{adapter.name}" in models for models in answered)
        states.append(
            AdapterState(
                parent=parent,
                adapter=adapter,
                replicas=len(by_parent[parent]),
                loaded_on=loaded_on if answered else None,
                verified=verified,
            )
        )
    _follow(services, states)
    return states


def _follow(services: GatewayServices, states: list[AdapterState]) -> None:
    """Swap in the catalogue these states describe (one assignment: requests in flight
    keep the catalogue they started with)."""
    before = services.adapters
    served: list[ServedAdapter] = []
    unloaded: list[str] = []
    for state in states:
        if not state.verified:
            continue  # never routed: 404 as an unknown adapter
        loaded = state.model in before.adapters if state.loaded_on is None else state.loaded_on > 0
        if loaded:
            served.append(state.served)
        else:
            unloaded.append(state.model)
    services.adapters = AdapterCatalog.of(served, unloaded)


def _mark(services: GatewayServices, state: AdapterState, *, loaded: bool) -> None:
    """Route (or refuse) one adapter in this process now, whatever the next sync says."""
    catalogue = services.adapters
    served = [a for a in catalogue.adapters.values() if a.model != state.model]
    unloaded = catalogue.unloaded - {state.model}
    if loaded:
        served.append(state.served)
    else:
        unloaded |= {state.model}
    services.adapters = AdapterCatalog.of(served, unloaded)


async def _find(services: GatewayServices, model: str) -> AdapterState:
    for state in await adapter_states(services):
        if state.model == model:
            return state
    raise ModelNotFound(f"no adapter {model!r} in the adapter store", code="adapter_not_found")


def _facts(state: AdapterState) -> dict[str, object]:
    """What the audit record says about the adapter."""
    return {
        **state.served.audit_params(),
        "adapter_model": state.model,
        "adapter_rank": state.adapter.rank,
        "adapter_teams": list(state.adapter.teams),
    }


async def _call_all(
    services: GatewayServices, parent: str, path: str, payload: dict[str, Any], done: str
) -> None:
    """Send ``payload`` to every replica of ``parent``. An answer whose message says
    the work was ``done`` already counts as success (load/unload are idempotent)."""

    async def one(replica: Any) -> str | None:
        try:
            status, body = await services.upstream.call_replica(replica, "POST", path, payload)
        except ApplianceError as exc:
            return exc.message
        if status == 200 or (status in (400, 404) and done in body.decode(errors="replace")):
            return None
        logger.warning("%s on %s answered %s: %s", path, replica.url, status, body[:500])
        return f"status {status}"

    replicas = services.upstream.pool.replicas(parent)
    failures = [f for f in await asyncio.gather(*(one(r) for r in replicas)) if f is not None]
    if failures:
        raise UpstreamError(
            f"{len(failures)} of {len(replicas)} engine replicas of {parent} failed "
            f"({'; '.join(sorted(set(failures)))}); is LoRA enabled in the engine?"
        )


async def load_adapter(
    services: GatewayServices, request: Request, principal: Principal, model: str
) -> AdapterState:
    """Verify ``model``'s adapter against its manifest, record the act, and load it
    from its store directory into every replica of its model."""
    state = await _find(services, model)
    try:
        await anyio.to_thread.run_sync(verify_adapter, state.adapter)
    except ManifestError as exc:
        await write_act(
            services, request, event=AuditEvent.ADAPTER_LOAD, principal=principal,
            status_code=400, params=_facts(state), denial_reason=exc.message,
        )  # fmt: skip
        request_context(request).admitted = True  # this refusal is on record already
        raise InvalidRequest(
            f"adapter {model!r} fails verification against its manifest and is not "
            f"loaded: {exc.message}",
            param="model",
            code="adapter_verification_failed",
        ) from exc
    await write_act(
        services, request, event=AuditEvent.ADAPTER_LOAD, principal=principal,
        status_code=200, params=_facts(state),
    )  # fmt: skip
    payload = {"lora_name": model, "lora_path": str(state.adapter.path.resolve())}
    try:
        await _call_all(services, state.parent, _LOAD, payload, "has already been loaded")
        _mark(services, state, loaded=True)
    finally:
        state = await _find(services, model)
    return state


async def unload_adapter(
    services: GatewayServices, request: Request, principal: Principal, model: str
) -> AdapterState:
    """Record the act, then unload ``model``'s adapter from every replica of its model.
    The catalogue refuses it in this process at once."""
    state = await _find(services, model)
    await write_act(
        services, request, event=AuditEvent.ADAPTER_UNLOAD, principal=principal,
        status_code=200, params=_facts(state),
    )  # fmt: skip
    _mark(services, state, loaded=False)  # refused here before the engines drop it
    try:
        await _call_all(services, state.parent, _UNLOAD, {"lora_name": model}, "cannot be found")
    except UpstreamError:
        _mark(services, state, loaded=True)  # the engines may still have it
        raise
    finally:
        state = await _find(services, model)
    return state


class AdapterSync:
    """Keeps a gateway process's catalogue in step with the engines, every
    ``interval_s`` (the first time one interval after start: the engines the gateway
    starts beside may still be loading)."""

    def __init__(self, services: GatewayServices, interval_s: float = SYNC_INTERVAL_S):
        self._services = services
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await adapter_states(self._services)
            except Exception:  # keep syncing: the next round may work
                logger.exception("syncing the adapter catalogue failed")

    def start(self) -> None:
        if self._task is None and self._interval_s > 0:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
