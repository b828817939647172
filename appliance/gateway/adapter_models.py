"""Adapters as models: which served model a ``<model>:<adapter>`` name runs on, and
which adapter of the store it is.

The gateway reads the adapter store at start (:func:`load_adapter_catalog`), the same
store the engine loaded its ``--lora-modules`` from; each adapter is named as vLLM
serves it, ``<served model>:<adapter>``. :mod:`appliance.gateway.adapter_control` then
keeps it in step with what the engines have loaded. The lookups here are pure."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

from appliance.adapters.serving import served_adapter_base
from appliance.adapters.store import StoredAdapter, list_adapters
from appliance.config import Settings
from appliance.errors import ApplianceError, InvalidRequest, ModelNotFound
from appliance.gateway.context import RequestContext
from appliance.gateway.schemas import OpenAIRequest

__all__ = [
    "AdapterCatalog",
    "ServedAdapter",
    "adapter_base",
    "load_adapter_catalog",
    "on_adapter",
]

logger = logging.getLogger(__name__)
_Request = TypeVar("_Request", bound=OpenAIRequest)


@dataclass(frozen=True)
class ServedAdapter:
    """One adapter as callers see it: ``model`` (``<served>:<adapter>``, also the name
    the engine registered it under) runs on the served model ``parent``."""

    model: str
    parent: str
    name: str
    teams: frozenset[str]
    manifest_sha256: str

    def audit_params(self) -> dict[str, str]:
        """What the audit metadata says about it: name, base and exact files."""
        return {
            "adapter": self.name,
            "adapter_base": self.parent,
            "adapter_manifest_sha256": self.manifest_sha256,
        }


def adapter_base(model: str, serves: Callable[[str], bool]) -> str | None:
    """The served model ``model`` names an adapter of (``base:adapter``), or None when
    it names a model (served or not) itself."""
    if serves(model):
        return None
    base, colon, adapter = model.rpartition(":")
    if not colon or not adapter or not serves(base):
        return None
    return base


@dataclass(frozen=True)
class AdapterCatalog:
    """The served adapters by their model name."""

    adapters: Mapping[str, ServedAdapter] = field(default_factory=lambda: MappingProxyType({}))
    # In the store but not loaded in the engine now (an admin unloaded it, or it was
    # imported after the engine started): 404 ``adapter_not_loaded``.
    unloaded: frozenset[str] = frozenset()

    @classmethod
    def of(cls, adapters: Iterable[ServedAdapter], unloaded: Iterable[str] = ()) -> AdapterCatalog:
        return cls(
            MappingProxyType({adapter.model: adapter for adapter in adapters}),
            frozenset(unloaded),
        )

    def of_parent(self, parent: str) -> list[ServedAdapter]:
        return sorted(
            (adapter for adapter in self.adapters.values() if adapter.parent == parent),
            key=lambda adapter: adapter.name,
        )

    def find(self, model: str) -> ServedAdapter:
        """The adapter ``model`` (``base:adapter``, base served) names. Unknown: 404 as
        for a model; an adapter that exists only for other bases: 400 naming them."""
        found = self.adapters.get(model)
        if found is not None:
            return found
        base, _, name = model.rpartition(":")
        if model in self.unloaded:
            raise ModelNotFound(
                f"adapter {name!r} of {base!r} is not loaded in the engine now; "
                "an admin can load it on the admin page",
                code="adapter_not_loaded",
            )
        others = sorted(a.parent for a in self.adapters.values() if a.name == name)
        if others:
            raise InvalidRequest(
                f"adapter {name!r} is not an adapter of {base!r}; it was trained for "
                + ", ".join(repr(other) for other in others),
                param="model",
                code="adapter_base_mismatch",
            )
        raise ModelNotFound(f"model {model!r} does not exist (no adapter {name!r} of {base!r})")


def _served(adapter: StoredAdapter, parent: str) -> ServedAdapter:
    return ServedAdapter(
        model=f"{parent}:{adapter.name}",
        parent=parent,
        name=adapter.name,
        teams=frozenset(adapter.teams),
        manifest_sha256=adapter.manifest_sha256,
    )


def load_adapter_catalog(settings: Settings) -> AdapterCatalog:
    """The adapters of every served model from the model store (none where the gateway
    has no store). An adapter whose metadata cannot be read is left out and logged:
    the engine refuses to start with it anyway."""
    served: list[ServedAdapter] = []
    for parent in dict.fromkeys(route.model for route in settings.effective_upstreams()):
        base = served_adapter_base(settings, parent)
        try:
            stored = list_adapters(settings.model_store, base)
        except (ApplianceError, OSError) as exc:
            logger.warning("adapters of %s are not served: %s", parent, exc)
            continue
        served.extend(_served(adapter, parent) for adapter in stored)
    return AdapterCatalog.of(served)


def on_adapter(
    context: RequestContext, parsed: _Request, adapter: ServedAdapter | None
) -> _Request:
    """An adapter's request goes to its served model's engine; the body keeps the
    adapter's name (vLLM serves it under that name) and the audit notes its files."""
    if adapter is None:
        return parsed
    context.params = {**(context.params or {}), **adapter.audit_params()}
    return parsed.model_copy(update={"model": adapter.parent})
