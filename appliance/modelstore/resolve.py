"""Which model directory an engine serves, made ready and verified before start."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from appliance.config import Settings
from appliance.modelstore.devmodel import prepare_dev_model
from appliance.modelstore.manifest import verify_manifest

__all__ = ["ready_embedding_model", "ready_engine_model"]


def ready_engine_model(
    settings: Settings, *, progress: Callable[[str], None] = lambda _msg: None
) -> Path:
    """Prepare the dev model if it is the one configured, then verify the manifest.
    Raises ManifestError: a model that fails its manifest is never served."""
    directory = settings.engine_model_dir
    if settings.engine.model_dir is None:
        prepare_dev_model(directory, progress=progress)
    progress(f"verifying {directory.name} against its sha256 manifest")
    verify_manifest(directory, on_file=lambda name: progress(f"verifying {name}"))
    return directory


def ready_embedding_model(
    settings: Settings, *, progress: Callable[[str], None] = lambda _msg: None
) -> Path:
    """The embedding engine's weights, prepared (the dev model, by default) and verified
    like the chat engine's."""
    directory = settings.embedding_model_dir
    if settings.embedding_engine.model_dir is None:
        prepare_dev_model(directory, progress=progress)
    progress(f"verifying {directory.name} against its sha256 manifest")
    verify_manifest(directory, on_file=lambda name: progress(f"verifying {name}"))
    return directory
