"""Per-team LoRA adapters: checked against their base, stored with a sha256
manifest beside it, and served by the engine with vLLM's multi-LoRA flags."""

from __future__ import annotations

from appliance.adapters.serving import engine_lora_serving, lora_serving, served_adapter_base
from appliance.adapters.shapes import (
    DEFAULT_MAX_ADAPTER_RANK,
    AdapterShape,
    check_adapter,
    check_base_name,
    module_dims,
)
from appliance.adapters.store import (
    ImportedAdapter,
    StoredAdapter,
    check_adapter_dir,
    find_adapter,
    import_adapter,
    list_adapters,
    read_safetensors_header,
    remove_adapter,
    verify_adapter,
)

__all__ = [
    "DEFAULT_MAX_ADAPTER_RANK",
    "AdapterShape",
    "ImportedAdapter",
    "StoredAdapter",
    "check_adapter",
    "check_adapter_dir",
    "check_base_name",
    "engine_lora_serving",
    "find_adapter",
    "import_adapter",
    "list_adapters",
    "lora_serving",
    "module_dims",
    "read_safetensors_header",
    "remove_adapter",
    "served_adapter_base",
    "verify_adapter",
]
