"""The OCI image of an image spec: umoci adds the layer tars verbatim (so a layer's
diff_id is the sha256 of the tar the build wrote) and sets the configuration; skopeo
writes the OCI archive; its manifest digest is what images.json lists."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from images.commands import run
from images.specs import ARCH, SUITE, UID, ImageSpec

__all__ = ["assemble", "export_archive", "layer_entries"]


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def assemble(
    spec: ImageSpec,
    work: Path,
    layers: Sequence[tuple[Path, str]],
    *,
    epoch: int,
    version: str,
    revision: str,
) -> Path:
    """umoci: an OCI layout holding the layers verbatim (gzip) and the configuration."""
    layout = work / "oci"
    shutil.rmtree(layout, ignore_errors=True)
    ref = f"{layout}:{version}"
    created = _iso(epoch)
    run(["umoci", "init", "--layout", layout])
    run(["umoci", "new", "--image", ref])
    for tar, created_by in layers:
        run(
            [
                "umoci",
                "raw",
                "add-layer",
                "--image",
                ref,
                "--history.created",
                created,
                "--history.created_by",
                created_by,
                tar,
            ]
        )
    labels = {
        "org.opencontainers.image.title": spec.repository,
        "org.opencontainers.image.description": spec.description,
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.revision": revision,
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.licenses": "Apache-2.0",
        "org.opencontainers.image.base.name": f"debian:{SUITE} (mmdebstrap, {spec.lock.name})",
    }
    config: list[str | Path] = [
        "umoci",
        "config",
        "--image",
        ref,
        "--no-history",
        "--created",
        created,
        "--author",
        "sovereign-appliance",
        "--architecture",
        ARCH,
        "--os",
        "linux",
        "--config.user",
        f"{UID}:{UID}",
        "--config.workingdir",
        spec.home,
    ]
    config += [arg for value in spec.env for arg in ("--config.env", value)]
    config += [arg for value in spec.entrypoint for arg in ("--config.entrypoint", value)]
    config += [arg for value in spec.cmd for arg in ("--config.cmd", value)]
    config += [arg for value in spec.writable for arg in ("--config.volume", value)]
    config += [arg for value in spec.ports for arg in ("--config.exposedports", value)]
    config += [arg for k, v in sorted(labels.items()) for arg in ("--config.label", f"{k}={v}")]
    run(config)
    run(["umoci", "gc", "--layout", layout])
    return layout


def export_archive(spec: ImageSpec, layout: Path, out: Path, version: str) -> tuple[Path, str]:
    """skopeo: the OCI archive, named ``repository:version`` inside; its manifest digest."""
    archive = out / f"{spec.name}-{version}.oci.tar"
    archive.unlink(missing_ok=True)
    run(
        [
            "skopeo",
            "copy",
            "--quiet",
            f"oci:{layout}:{version}",
            f"oci-archive:{archive}:{spec.repository}:{version}",
        ]
    )
    manifest = subprocess.run(
        ["skopeo", "inspect", "--raw", f"oci-archive:{archive}"], check=True, capture_output=True
    ).stdout
    return archive, "sha256:" + hashlib.sha256(manifest).hexdigest()


def layer_entries(layout: Path, digest: str) -> list[dict[str, object]]:
    blobs = layout / "blobs" / "sha256"
    manifest = json.loads((blobs / digest.removeprefix("sha256:")).read_bytes())
    config = json.loads((blobs / manifest["config"]["digest"].removeprefix("sha256:")).read_bytes())
    return [
        {"digest": layer["digest"], "diff_id": diff_id, "size": layer["size"]}
        for layer, diff_id in zip(manifest["layers"], config["rootfs"]["diff_ids"], strict=True)
    ]
