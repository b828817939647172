"""The CycloneDX SBOM of one image (scripts/build_images.py): the Python packages of
its venv, read by ``cyclonedx-py environment`` (cyclonedx-bom) from the installed
metadata in the app layer, plus its Debian packages from the lock, and the image
itself (name, version, manifest digest) as the described component."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Sequence
from pathlib import Path

from packageurl import PackageURL

__all__ = ["write_image_sbom"]

DISTRO = "debian-12"


def _site_packages(app_tar: Path, work: Path) -> Path:
    with tarfile.open(app_tar) as archive:
        wanted = [m for m in archive if "/site-packages/" in m.name and (m.isfile() or m.isdir())]
        archive.extractall(work, members=wanted, filter="data")
    (site,) = work.glob("opt/appliance/venv/lib/python3*/site-packages")
    return site


def _python_stub(site: Path, work: Path) -> Path:
    """cyclonedx-py asks "the interpreter" for sys.path, then reads the metadata found
    there. The image's interpreter runs only inside the image, so this stub answers
    with the unpacked site-packages instead."""
    stub = work / "python"
    stub.write_text(f"#!/bin/sh\nprintf '%s' '{json.dumps([str(site)])}'\n")
    stub.chmod(0o755)
    return stub


def _debian_component(package: str, arch: str) -> dict[str, object]:
    name, version = package.split("=", 1)
    purl = PackageURL(
        type="deb",
        namespace="debian",
        name=name,
        version=version,
        qualifiers={"arch": arch, "distro": DISTRO},
    ).to_string()
    return {"type": "library", "bom-ref": purl, "name": name, "version": version, "purl": purl}


def write_image_sbom(
    out: Path,
    *,
    app_tar: Path,
    work: Path,
    debian_packages: Sequence[str],
    arch: str,
    image_name: str,
    version: str,
    digest: str,
    epoch: int,
) -> None:
    work.mkdir(parents=True, exist_ok=True)
    stub = _python_stub(_site_packages(app_tar, work), work)
    raw = work / "python.cdx.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "cyclonedx_py",
            "environment",
            "--output-reproducible",
            "--sv",
            "1.6",
            "--of",
            "JSON",
            "-o",
            str(raw),
            str(stub),
        ],
        check=True,
        env={**os.environ, "SOURCE_DATE_EPOCH": str(epoch)},
    )
    bom = json.loads(raw.read_text())
    name = image_name.rsplit("/", 1)[-1]
    image_purl = PackageURL(
        type="oci", name=name, version=digest, qualifiers={"tag": version}
    ).to_string()
    bom["metadata"]["component"] = {
        "type": "container",
        "bom-ref": image_purl,
        "name": image_name,
        "version": version,
        "purl": image_purl,
        "hashes": [{"alg": "SHA-256", "content": digest.removeprefix("sha256:")}],
    }
    python_refs = [component["bom-ref"] for component in bom.get("components", [])]
    debian = [_debian_component(package, arch) for package in debian_packages]
    bom["components"] = [*bom.get("components", []), *debian]
    bom["dependencies"] = [
        *(d for d in bom.get("dependencies", []) if d.get("ref") != image_purl),
        {"ref": image_purl, "dependsOn": sorted([*python_refs, *(c["bom-ref"] for c in debian)])},
    ]
    out.write_text(json.dumps(bom, indent=2) + "\n")
