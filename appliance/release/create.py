"""``appliance bundle create``: everything an air-gapped site installs, in one folder,
listed, hashed and signed (the connected side of the two-phase install).

Layout of a bundle::

    MANIFEST                 signed note: sha256, size and path of every other file
    bundle.json              version, target Python and platform, sets, images
    verify_bundle.py         the standalone verifier (Python + cryptography)
    README.txt               what to do on the air-gapped side
    wheelhouse/              wheels + requirements-<set>.txt (hash-pinned)
    images/                  OCI archives, images.json, one SBOM per image (make image)
    sbom/                    CycloneDX SBOM of each wheelhouse install set
    helm/appliance-<v>.tgz   the packaged chart
    deploy/appliance-deploy-<v>.tar.gz   Makefile, ansible/, helm/, scripts/, docs/
    models/<name>.yaml       model profiles with their weight manifests
    models/weights/<name>/   weights (--with-weights)
"""

from __future__ import annotations

import gzip
import io
import json
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version as package_version
from pathlib import Path

from appliance.audit.checkpoint import NoteSigner
from appliance.errors import BundleError
from appliance.planner.profiles import default_profiles_dir
from appliance.release import release_verifier
from appliance.release.manifest import write_manifest
from appliance.release.wheelhouse import INSTALL_SETS, Target, build_wheelhouse, host_platform

__all__ = ["BUNDLE_INFO", "BundleRequest", "create_bundle", "deterministic_tar"]

BUNDLE_INFO = "bundle.json"
# What the deploy archive carries from a source checkout (make deploy needs all of it).
_DEPLOY_PATHS = ("Makefile", "README.md", "ansible", "helm", "scripts", "docs")
_SKIP = {"__pycache__", ".plan", "node_modules", ".pytest_cache"}

Step = Callable[[str], None]
Progress = Callable[[str, int], None]


@dataclass(frozen=True)
class BundleRequest:
    out: Path
    source: Path
    signer: NoteSigner
    sets: Sequence[str] = ("gateway", "cpu", "gpu")
    target: Target = field(default_factory=Target)
    images: Path | None = None
    weights: Sequence[Path] = ()
    wheelhouse: Path | None = None  # reuse a built one (make image builds it too)
    sbom: bool = True


def _version() -> str:
    return package_version("sovereign-appliance")


def deterministic_tar(out: Path, root: Path, members: Sequence[str], *, prefix: str) -> None:
    """A gzip tar of ``members`` of ``root`` under ``prefix/``: sorted, owner 0, mtime 0,
    so the same files always give the same bytes."""

    def clean(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if set(Path(info.name).parts) & _SKIP or info.name.endswith((".pyc", ".retry")):
            return None
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = 0
        return info

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for member in sorted(members):
            path = root / member
            if not path.exists():
                raise BundleError(f"{path} is missing from the source checkout")
            paths = [path] if path.is_file() else [path, *sorted(path.rglob("*"))]
            for item in paths:
                relative = item.relative_to(root).as_posix()
                arcname = f"{prefix}/{relative}" if prefix else relative
                info = clean(archive.gettarinfo(str(item), arcname))
                if info is None or (item.is_symlink() and not item.is_file()):
                    continue
                if info.isfile():
                    with item.open("rb") as stream:
                        archive.addfile(info, stream)
                elif info.isdir():
                    archive.addfile(info)
    with out.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as zipped:
        zipped.write(buffer.getvalue())


def _wheelhouse_sboms(wheelhouse: Path, sets: Sequence[str], out: Path) -> list[str]:
    """One CycloneDX SBOM per install set, from its hash-pinned requirements."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in sets:
        target = out / f"wheelhouse-{name}.cdx.json"
        done = subprocess.run(
            [sys.executable, "-m", "cyclonedx_py", "requirements",
             "--output-format", "JSON", "--output-file", str(target),
             str(wheelhouse / f"requirements-{name}.txt")],
            capture_output=True, text=True,
        )  # fmt: skip
        if done.returncode != 0:
            if "No module named cyclonedx_py" in done.stderr:
                raise BundleError(
                    "the SBOM generator is missing: pip install cyclonedx-bom "
                    "(or --no-sbom, and say so to whoever reviews the bundle)"
                )
            raise BundleError(f"SBOM for the {name!r} set failed: {done.stderr.strip()[-300:]}")
        written.append(target.name)
    return written


def _copy_images(images: Path, out: Path) -> list[dict[str, str]]:
    index = images / "images.json"
    if not index.is_file():
        raise BundleError(f"{images} has no images.json: build the images with `make image`")
    listed = json.loads(index.read_text(encoding="utf-8"))
    entries = listed.get("images", listed) if isinstance(listed, dict) else listed
    out.mkdir(parents=True)
    shutil.copy2(index, out / "images.json")
    for entry in entries:
        for key in ("archive", "sbom"):
            name = entry.get(key)
            if name:
                if not (images / name).is_file():
                    raise BundleError(f"images.json names {name}, which is not in {images}")
                shutil.copy2(images / name, out / name)
    return list(entries)


def _readme(version: str, sets: Sequence[str]) -> str:
    return f"""Sovereign inference appliance {version}: release bundle

1. Verify it, with the release public key you received separately (not a copy from
   this medium):
       python3 verify_bundle.py . --key /path/to/release.pub
2. Install (verifies again first; installs from this folder only):
       appliance bundle install . --key /path/to/release.pub --set {sets[0]}
   or without an appliance yet:
       python3 -m venv /tmp/boot && /tmp/boot/bin/pip install --no-index --no-deps \\
         --require-hashes -r wheelhouse/requirements-gateway.txt --find-links wheelhouse
       /tmp/boot/bin/appliance bundle install . --key /path/to/release.pub
3. Deploy: docs/airgap.md inside deploy/appliance-deploy-{version}.tar.gz.
"""


def create_bundle(
    request: BundleRequest, *, step: Step, progress: Progress | None = None
) -> dict[str, object]:
    """Fill ``request.out`` (new or empty) and sign it; return the bundle info."""
    out = request.out
    if out.exists() and any(out.iterdir()):
        raise BundleError(f"{out} is not empty; give a new folder for the bundle")
    unknown = [name for name in request.sets if name not in INSTALL_SETS]
    if unknown or not request.sets:
        raise BundleError(f"install sets must be among {sorted(INSTALL_SETS)}, got {unknown}")
    source = request.source
    if not (source / "pyproject.toml").is_file() or not (source / "helm").is_dir():
        raise BundleError(
            f"{source} is not a source checkout of the appliance (bundle create needs "
            "pyproject.toml, helm/ and ansible/ from one; --source DIR)"
        )
    out.mkdir(parents=True, exist_ok=True)
    version = _version()

    wheelhouse = out / "wheelhouse"
    if request.wheelhouse is not None:
        step(f"copying the wheelhouse from {request.wheelhouse}")
        missing = [
            s for s in request.sets if not (request.wheelhouse / f"requirements-{s}.txt").is_file()
        ]
        if missing:
            raise BundleError(f"{request.wheelhouse} has no requirements for {missing}")
        shutil.copytree(request.wheelhouse, wheelhouse)
    else:
        build_wheelhouse(
            wheelhouse, source=source, sets=request.sets, target=request.target, step=step
        )

    sboms: list[str] = []
    if request.sbom:
        step("writing CycloneDX SBOMs of the wheelhouse")
        sboms = _wheelhouse_sboms(wheelhouse, request.sets, out / "sbom")

    images: list[dict[str, str]] = []
    if request.images is not None:
        step(f"copying OCI images from {request.images}")
        images = _copy_images(request.images, out / "images")

    step("packaging the Helm chart and the deploy content")
    (out / "helm").mkdir()
    chart = source / "helm" / "appliance"
    # `helm install appliance-<v>.tgz` takes it as is: the chart folder at the top.
    deterministic_tar(
        out / "helm" / f"appliance-{version}.tgz", chart.parent, ["appliance"], prefix=""
    )
    (out / "deploy").mkdir()
    deterministic_tar(
        out / "deploy" / f"appliance-deploy-{version}.tar.gz", source,
        [p for p in _DEPLOY_PATHS if (source / p).exists()], prefix=f"appliance-{version}",
    )  # fmt: skip

    step("copying model profiles and weights")
    models = out / "models"
    models.mkdir()
    for profile in sorted(default_profiles_dir().glob("*.yaml")):
        shutil.copy2(profile, models / profile.name)
    for weights in request.weights:
        if not weights.is_dir():
            raise BundleError(f"--with-weights {weights}: not a directory")
        shutil.copytree(weights, models / "weights" / weights.name, symlinks=False)

    verifier_source = Path(release_verifier.__file__)
    shutil.copy2(verifier_source, out / "verify_bundle.py")
    (out / "README.txt").write_text(_readme(version, request.sets), encoding="utf-8")
    info: dict[str, object] = {
        "format": release_verifier.FORMAT_LINE,
        "package": "sovereign-appliance",
        "version": version,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": request.target.python_version,
        "platform": request.target.platform or host_platform(),
        "sets": list(request.sets),
        "images": images,
        "sboms": sboms,
        "weights": [w.name for w in request.weights],
    }
    (out / BUNDLE_INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")

    step("hashing every file and signing MANIFEST")
    listing = write_manifest(
        out, request.signer,
        [f"sovereign-appliance {version}", f"python {info['python']} {info['platform']}"],
        progress,
    )  # fmt: skip
    info["files"] = len(listing)
    info["bytes"] = sum(size for _digest, size in listing.values())
    return info
