"""The adapters an engine loads at start: verified, then as vLLM's LoRA flags."""

from __future__ import annotations

from pathlib import Path

from appliance.adapters.store import list_adapters, verify_adapter
from appliance.config import Settings
from appliance.engine.launch import LoraModule, LoraServing

__all__ = ["engine_lora_serving", "lora_serving", "served_adapter_base"]


def served_adapter_base(settings: Settings, served_model_name: str) -> str:
    """The store name whose adapters a served model loads: the chat engine's model
    directory name (``engine.model_dir`` or ``<store>/<served name>``), also where the
    engine runs elsewhere (the Helm chart sets ``engine.model_dir`` for the gateway);
    any other upstream's own model name."""
    engine = settings.engine
    if served_model_name == engine.served_model_name:
        return settings.engine_model_dir.name
    return served_model_name


def engine_lora_serving(settings: Settings) -> LoraServing | None:
    """The local engine's adapters (verified), as vLLM flags; None without any."""
    name = settings.engine.served_model_name
    return lora_serving(settings.model_store, served_adapter_base(settings, name), name)


def lora_serving(
    store: Path,
    base: str,
    served_model_name: str,
    *,
    max_loras: int | None = None,
    verify: bool = True,
) -> LoraServing | None:
    """The LoRA flags for ``base``'s adapters, each named ``<served>:<adapter>`` and
    loaded from its store directory; None when it has none. With ``verify`` every
    adapter is checked against its manifest first (ManifestError: never served)."""
    modules = []
    for adapter in list_adapters(store, base):
        if verify:
            verify_adapter(adapter)
        modules.append(
            LoraModule(
                name=f"{served_model_name}:{adapter.name}",
                path=adapter.path.resolve(),
                rank=adapter.rank,
            )
        )
    return LoraServing.of(modules, served_model_name, max_loras)
