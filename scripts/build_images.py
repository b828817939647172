#!/usr/bin/env python3
"""Build the appliance's OCI images without a daemon (``make image``; docs/images.md).

    scripts/build_images.py                    # both images -> dist/images/
    scripts/build_images.py --only gateway     # one of them
    scripts/build_images.py --update-lock      # re-resolve the Debian packages, rewrite the locks
    scripts/build_images.py --lock-fallback    # re-resolve only if a pin left the mirror
    scripts/build_images.py --wheelhouse DIR   # install from an existing wheelhouse

Per image: mmdebstrap builds the base root filesystem from Debian packages pinned by
``scripts/images/<image>.lock`` (no registry, no Dockerfile); its hook
(scripts/images/rootfs-hook.sh) installs one wheelhouse install set into a venv with
pip run inside that root filesystem and writes /opt/appliance as a second tar; umoci
adds both tars verbatim as the two layers and sets the image configuration; skopeo
writes the OCI archive. Everything is stamped with SOURCE_DATE_EPOCH (the last
commit's time unless set), so the same inputs give the same layer digests.
Outputs: ``<image>-<version>.oci.tar``, ``<image>-<version>.cdx.json`` (CycloneDX),
``<image>.lock`` (the Debian packages it was built from) and ``images.json`` (name,
tag, manifest digest, archive, layers, and whether the lock was used as pinned).

Strict by default: a pinned version the mirror no longer has fails the build. With
``--lock-fallback`` (or IMAGE_LOCK_FALLBACK=1) such a build is re-resolved from the
spec's package list instead, with a warning; the repository's lock is left alone.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from images.commands import step  # noqa: E402
from images.lock import fallback_enabled  # noqa: E402
from images.oci import assemble, export_archive, layer_entries  # noqa: E402
from images.rootfs import RE_RESOLVED, UPDATED, RootFs, build_rootfs, render_lock  # noqa: E402
from images.sbom import write_image_sbom  # noqa: E402
from images.specs import ARCH, IMAGES, SUITE, ImageSpec  # noqa: E402

from appliance.release.wheelhouse import Target, build_wheelhouse  # noqa: E402


def source_date_epoch() -> int:
    if "SOURCE_DATE_EPOCH" in os.environ:
        return int(os.environ["SOURCE_DATE_EPOCH"])
    done = subprocess.run(
        ["git", "-C", str(ROOT), "log", "-1", "--format=%ct"], capture_output=True, text=True
    )
    if done.returncode == 0 and done.stdout.strip():
        return int(done.stdout.strip())
    return int((ROOT / "pyproject.toml").stat().st_mtime)


def git_revision() -> str:
    done = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def mib(size: int) -> str:
    return f"{size / 2**20:,.0f} MiB"


def _lock_entry(repo_lock: str, out_lock: str, rootfs: RootFs) -> dict[str, object]:
    """images.json: which Debian package set the image was built from."""
    entry: dict[str, object] = {
        "source": rootfs.lock,  # pinned | re-resolved | updated (--update-lock)
        "repository_lock": f"scripts/images/{repo_lock}",
        "lock": out_lock,
        "build_only": list(rootfs.build_debs),
    }
    if rootfs.lock == RE_RESOLVED:
        entry["missing_from_mirror"] = list(rootfs.missing)
        entry["differences"] = rootfs.diff.as_json()
    return entry


def build_image(
    spec: ImageSpec,
    *,
    wheelhouse: Path,
    out: Path,
    work_root: Path,
    epoch: int,
    version: str,
    update_lock: bool,
    lock_fallback: bool,
    keep_work: bool,
) -> dict[str, object]:
    work = work_root / spec.name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.monotonic()
    step(
        f"{spec.name}: root filesystem from Debian {SUITE} ({spec.lock.name}) and the "
        f"{spec.install_set!r} install set"
    )
    rootfs = build_rootfs(
        spec, work, wheelhouse, epoch, update_lock=update_lock, lock_fallback=lock_fallback
    )
    base_tar, app_tar, packages = rootfs.base_tar, rootfs.app_tar, rootfs.packages
    variant = spec.refresh_variant if rootfs.lock == UPDATED else spec.variant
    lock = out / f"{spec.name}.lock"
    lock.write_text(render_lock(spec, rootfs))
    step(f"{spec.name}: OCI image (umoci) and archive (skopeo)")
    layout = assemble(
        spec,
        work,
        [
            (base_tar, f"mmdebstrap --variant={variant} {SUITE} ({len(packages)} packages)"),
            (app_tar, f"pip install -r requirements-{spec.install_set}.txt (/opt/appliance/venv)"),
        ],
        epoch=epoch,
        version=version,
        revision=git_revision(),
    )
    archive, digest = export_archive(spec, layout, out, version)
    step(f"{spec.name}: CycloneDX SBOM")
    sbom = out / f"{spec.name}-{version}.cdx.json"
    write_image_sbom(
        sbom,
        app_tar=app_tar,
        work=work / "sbom",
        debian_packages=packages,
        arch=ARCH,
        image_name=spec.repository,
        version=version,
        digest=digest,
        epoch=epoch,
    )
    layers = layer_entries(layout, digest)
    unpacked = base_tar.stat().st_size + app_tar.stat().st_size
    entry: dict[str, object] = {
        "name": spec.name,
        "repository": spec.repository,
        "tag": version,
        "digest": digest,
        "archive": archive.name,
        "sbom": sbom.name,
        "archive_bytes": archive.stat().st_size,
        "unpacked_bytes": unpacked,
        "layers": layers,
        "debian_packages": len(packages),
        "debian_lock": _lock_entry(spec.lock.name, lock.name, rootfs),
        "source_date_epoch": epoch,
        "build_seconds": round(time.monotonic() - started, 1),
    }
    if not keep_work:
        shutil.rmtree(work)
    return entry


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=sorted(IMAGES), action="append")
    parser.add_argument("--out", type=Path, default=ROOT / "dist" / "images")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "images")
    parser.add_argument("--wheelhouse", type=Path, help="existing wheelhouse (default: build one)")
    parser.add_argument("--update-lock", action="store_true", help="re-resolve Debian packages")
    parser.add_argument(
        "--lock-fallback",
        action="store_true",
        help="if the mirror lacks a pinned version, re-resolve for this build (with a "
        "warning; recorded in images.json; also IMAGE_LOCK_FALLBACK=1)",
    )
    parser.add_argument("--keep-work", action="store_true", help="keep the layer tars (debugging)")
    args = parser.parse_args(argv)
    lock_fallback = fallback_enabled(args.lock_fallback, os.environ)
    for tool in ("mmdebstrap", "umoci", "skopeo", "dpkg-deb", "apt-get", "tar"):
        if shutil.which(tool) is None:
            raise SystemExit(
                f"{tool} not found: apt-get install mmdebstrap umoci skopeo "
                "(scripts/install-test-tools.sh does it as root)"
            )
    started = time.monotonic()
    epoch = source_date_epoch()
    os.environ["SOURCE_DATE_EPOCH"] = str(epoch)  # the appliance wheel's zip timestamps
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    version = pyproject["project"]["version"]
    specs = [IMAGES[name] for name in (args.only or IMAGES)]
    args.out.mkdir(parents=True, exist_ok=True)
    work_root = args.work.resolve()
    wheelhouse = args.wheelhouse
    if wheelhouse is None:
        wheelhouse = work_root / "wheelhouse"
        shutil.rmtree(wheelhouse, ignore_errors=True)
        sets = ", ".join(s.install_set for s in specs)
        step(f"wheelhouse for {sets} (SOURCE_DATE_EPOCH={epoch})")
        build_wheelhouse(
            wheelhouse,
            source=ROOT,
            sets=[s.install_set for s in specs],
            target=Target(),
            step=lambda message: print(f"    {message}", flush=True),
        )
    entries = [
        build_image(
            spec,
            wheelhouse=wheelhouse.resolve(),
            out=args.out,
            work_root=work_root,
            epoch=epoch,
            version=version,
            update_lock=args.update_lock,
            lock_fallback=lock_fallback,
            keep_work=args.keep_work,
        )
        for spec in specs
    ]
    index = args.out / "images.json"
    previous = json.loads(index.read_text())["images"] if index.exists() else []
    names = {entry["name"] for entry in entries}
    merged = [e for e in previous if e["name"] not in names] + entries
    index.write_text(
        json.dumps(
            {"version": version, "images": sorted(merged, key=lambda e: str(e["name"]))},
            indent=2,
        )
        + "\n"
    )
    step(f"done in {time.monotonic() - started:.0f} s -> {args.out}")
    for entry in entries:
        print(
            f"  {entry['name']}:{version}  {entry['digest']}\n"
            f"    archive {mib(int(str(entry['archive_bytes'])))} (gzip), unpacked "
            f"{mib(int(str(entry['unpacked_bytes'])))}, built in {entry['build_seconds']} s"
        )
    _warn_re_resolved(entries, args.out)
    return 0


def _warn_re_resolved(entries: Sequence[dict[str, object]], out: Path) -> None:
    """Repeat the lock fallback's warning where the log ends."""
    for entry in entries:
        lock = entry["debian_lock"]
        assert isinstance(lock, dict)
        if lock["source"] != RE_RESOLVED:
            continue
        missing = ", ".join(lock["missing_from_mirror"])
        print(
            f"!! WARNING {entry['name']} was built from RE-RESOLVED Debian packages, not "
            f"{lock['repository_lock']} (the mirror lacked {missing})."
            f"\n!!   Lock used: {out / str(lock['lock'])} (differences in images.json). Not the "
            "image the repository's lock builds: review, then re-pin with --update-lock.",
            file=sys.stderr,
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(main())
