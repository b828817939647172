"""The adapters an engine loads at start: verified, then as vLLM's LoRA flags."""

from __future__ import annotations

from pathlib import Path

from appliance.adapters.store import list_adapters, verify_adapter
from appliance.engine.launch import LoraModule, LoraServing

__all__ = ["lora_serving"]


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
