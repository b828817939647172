"""The offline model store: model directories verified against sha256 manifests."""

from __future__ import annotations

from appliance.modelstore.devmodel import (
    DEV_MODEL_GGUF_SHA256,
    find_dev_model_gguf,
    prepare_dev_model,
)
from appliance.modelstore.manifest import (
    MANIFEST_NAME,
    compute_manifest,
    format_manifest,
    parse_manifest,
    verify_manifest,
    write_manifest,
)
from appliance.modelstore.resolve import ready_embedding_model, ready_engine_model

__all__ = [
    "DEV_MODEL_GGUF_SHA256",
    "MANIFEST_NAME",
    "compute_manifest",
    "find_dev_model_gguf",
    "format_manifest",
    "parse_manifest",
    "prepare_dev_model",
    "ready_embedding_model",
    "ready_engine_model",
    "verify_manifest",
    "write_manifest",
]
