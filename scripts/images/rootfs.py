"""The root filesystem of an image: mmdebstrap from Debian packages pinned by the
image's lock file, with scripts/images/rootfs-hook.sh installing the venv. Gives the
base layer tar, the app layer tar, the package list and where that list came from:
the pinned lock, a re-pinned one (``--update-lock``), or, with the lock fallback, a
re-resolution after the mirror dropped a pinned version (docs/images.md)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from images.commands import CommandFailed, run
from images.lock import (
    FALLBACK_ENV,
    LockDiff,
    diff_locks,
    lock_text,
    missing_pins,
    resolved_by_apt,
    should_re_resolve,
)
from images.specs import ARCH, PATH_EXCLUDES, PIP_WHEEL_DEB, SUITE, UID, ImageSpec

__all__ = [
    "PINNED",
    "RE_RESOLVED",
    "UPDATED",
    "RootFs",
    "build_rootfs",
    "debian_sources",
    "read_lock",
    "render_lock",
]

HOOK = Path(__file__).resolve().parent / "rootfs-hook.sh"
PINNED, UPDATED, RE_RESOLVED = "pinned", "updated", "re-resolved"


@dataclass(frozen=True)
class RootFs:
    base_tar: Path
    app_tar: Path
    packages: tuple[str, ...]  # the image's Debian packages, pkg=version
    build_debs: tuple[str, ...]  # Debian packages used by the build only (pip's wheel)
    lock: str  # PINNED, UPDATED (--update-lock) or RE_RESOLVED (lock fallback)
    missing: tuple[str, ...] = ()  # RE_RESOLVED: the pins the mirror no longer had
    diff: LockDiff = field(default_factory=LockDiff)  # RE_RESOLVED: resolved vs pinned


def debian_sources() -> list[str]:
    """One-line apt sources. IMAGE_DEBIAN_SNAPSHOT=20250520T000000Z builds from
    snapshot.debian.org, which keeps every version a lock can name."""
    snapshot = os.environ.get("IMAGE_DEBIAN_SNAPSHOT")
    if snapshot:
        main = f"http://snapshot.debian.org/archive/debian/{snapshot}"
        security = f"http://snapshot.debian.org/archive/debian-security/{snapshot}"
    else:
        main = os.environ.get("IMAGE_DEBIAN_MIRROR", "http://deb.debian.org/debian")
        security = os.environ.get("IMAGE_DEBIAN_SECURITY", "http://deb.debian.org/debian-security")
    return [
        f"deb {main} {SUITE} main",
        f"deb {main} {SUITE}-updates main",
        f"deb {security} {SUITE}-security main",
    ]


def read_lock(path: Path) -> list[str]:
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def render_lock(spec: ImageSpec, rootfs: RootFs) -> str:
    """The lock an image was built from: the repository's (``--update-lock``) or the
    copy written next to the image's archive."""
    requested = ", ".join(spec.packages) + (
        f" (+ {', '.join(spec.extract_no_deps)} without dependencies)"
        if spec.extract_no_deps
        else ""
    )
    if rootfs.lock == UPDATED:
        comments = [f"Written by scripts/build_images.py --update-lock from: {requested}"]
    elif rootfs.lock == RE_RESOLVED:
        comments = [
            f"Written by scripts/build_images.py --lock-fallback from: {requested}",
            f"RE-RESOLVED, not scripts/images/{spec.lock.name}: the mirror lacked "
            + ", ".join(rootfs.missing),
            "Review the differences (images.json), then re-pin with --update-lock.",
        ]
    else:
        comments = [f"Built from scripts/images/{spec.lock.name} as pinned (this is a copy)."]
    comments.append(f"Build only, not in the image: {' '.join(rootfs.build_debs)}")
    return lock_text(
        image=spec.name, suite=SUITE, arch=ARCH, packages=rootfs.packages, comments=comments
    )


@dataclass(frozen=True)
class _Selection:
    """What one mmdebstrap run asks apt for."""

    include: Sequence[str]  # pkg=version (pinned) or names (resolved)
    no_deps: Sequence[str]  # taken without their dependencies (extract variant)
    variant: str
    build_deb: str  # pip's wheel package, pinned or not


def _pinned(spec: ImageSpec, pinned: Sequence[str], *, pin_pip: bool = True) -> _Selection:
    """As the lock says: its packages, the no-deps ones (gateway: base-files) as pinned
    there or, missing from ``pinned``, by name."""
    no_deps = set(spec.extract_no_deps)
    named = {p.split("=")[0] for p in pinned}
    return _Selection(
        include=[p for p in pinned if p.split("=")[0] not in no_deps],
        no_deps=[p for p in pinned if p.split("=")[0] in no_deps]
        + [name for name in spec.extract_no_deps if name not in named],
        variant=spec.variant,
        build_deb=PIP_WHEEL_DEB if pin_pip else PIP_WHEEL_DEB.split("=", 1)[0],
    )


def _unpinned(spec: ImageSpec) -> _Selection:
    return _Selection(
        include=spec.packages,
        no_deps=spec.extract_no_deps,
        variant=spec.refresh_variant,
        build_deb=PIP_WHEEL_DEB,  # pip's wheel stays pinned by specs.py
    )


def _resolve(spec: ImageSpec, work: Path) -> tuple[str, ...]:
    """What --update-lock would pin today (the spec's packages and their closure, as
    apt resolves them with the refresh variant), without building: mmdebstrap
    --simulate. The packages taken without dependencies are not in it."""
    args: list[str | Path] = [
        "mmdebstrap",
        "--simulate",
        "--verbose",
        f"--variant={spec.refresh_variant}",
        f"--architectures={ARCH}",
        f"--include={','.join(spec.packages)}",
    ]
    if os.environ.get("IMAGE_DEBIAN_SNAPSHOT"):
        args.append('--aptopt=Acquire::Check-Valid-Until "false"')
    args += [SUITE, work / "simulated.tar", *debian_sources()]
    return resolved_by_apt(run(args))


def _mmdebstrap(
    spec: ImageSpec, work: Path, wheelhouse: Path, epoch: int, selection: _Selection
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """One mmdebstrap run into ``work``: (image packages, build-only packages)."""
    include, no_deps, variant = selection.include, selection.no_deps, selection.variant
    base_tar, app_tar = work / "base.tar", work / "app.tar"
    packages_out, build_debs_out = work / "packages", work / "build-debs"
    for stale in (base_tar, app_tar, packages_out, build_debs_out):
        stale.unlink(missing_ok=True)
    config_dir = work / "etc-appliance"
    if spec.config_files:
        config_dir.mkdir(exist_ok=True)
        for name, text in spec.config_files:
            (config_dir / name).write_text(text)
    env = {
        **os.environ,
        "SOURCE_DATE_EPOCH": str(epoch),
        "IMAGE_UID": str(UID),
        "IMAGE_HOME": spec.home,
        "IMAGE_WRITABLE": " ".join(spec.writable),
        "IMAGE_INSTALL_SET": spec.install_set,
        "IMAGE_WHEELHOUSE": str(wheelhouse),
        "IMAGE_APP_TAR": str(app_tar),
        "IMAGE_PACKAGES_OUT": str(packages_out),
        "IMAGE_BUILD_DEBS": selection.build_deb,
        "IMAGE_BUILD_DEBS_OUT": str(build_debs_out),
        "IMAGE_EXTRACT_NO_DEPS": " ".join(no_deps),
        "IMAGE_CONFIG_DIR": str(config_dir) if spec.config_files else "",
    }
    args: list[str | Path] = [
        "mmdebstrap",
        f"--variant={variant}",
        f"--architectures={ARCH}",
        f"--include={','.join(include)}",
        "--skip=output/dev",
        '--setup-hook=mkdir -p "$1/dev" "$1/proc" "$1/sys"',
        *(f"--dpkgopt=path-exclude={pattern}" for pattern in PATH_EXCLUDES),
        "--dpkgopt=path-include=/usr/share/doc/*/copyright",
        f"--{'extract' if variant == 'extract' else 'customize'}-hook={HOOK}",
    ]
    if os.environ.get("IMAGE_DEBIAN_SNAPSHOT"):
        args.append('--aptopt=Acquire::Check-Valid-Until "false"')
    args += [SUITE, base_tar, *debian_sources()]
    run(args, env=env)
    return tuple(read_lock(packages_out)), tuple(read_lock(build_debs_out))


def _warn(lines: Sequence[str]) -> None:
    print("\n".join(f"!! WARNING {line}" for line in lines), file=sys.stderr, flush=True)


def _strict_hint(missing: Sequence[str]) -> str:
    if not missing:
        return (
            "\nA pinned version may have left the mirror (deb.debian.org keeps only the "
            "newest of each suite): set IMAGE_DEBIAN_SNAPSHOT=<YYYYMMDDTHHMMSSZ> or run "
            "--update-lock."
        )
    return (
        f"\nThe mirror no longer has {', '.join(missing)} (deb.debian.org keeps only the "
        "newest version of each suite). Re-pin with --update-lock and review the lock "
        "diff, build from a snapshot with IMAGE_DEBIAN_SNAPSHOT=<YYYYMMDDTHHMMSSZ>, or "
        f"build with --lock-fallback ({FALLBACK_ENV}=1) to re-resolve for this build only "
        "(recorded in images.json)."
    )


def build_rootfs(
    spec: ImageSpec,
    work: Path,
    wheelhouse: Path,
    epoch: int,
    *,
    update_lock: bool,
    lock_fallback: bool = False,
) -> RootFs:
    """mmdebstrap from the lock (or, with ``update_lock``, from the spec's package list,
    rewriting the lock). With ``lock_fallback``, a pinned build that fails because the
    mirror lacks pinned versions is retried from the spec's package list; the
    repository's lock stays as it is."""
    base_tar, app_tar = work / "base.tar", work / "app.tar"
    if update_lock:
        packages, build_debs = _mmdebstrap(spec, work, wheelhouse, epoch, _unpinned(spec))
        rootfs = RootFs(base_tar, app_tar, packages, build_debs, UPDATED)
        spec.lock.write_text(render_lock(spec, rootfs))
        return rootfs
    pinned = read_lock(spec.lock)
    if not pinned:
        raise SystemExit(f"{spec.lock} is missing: run scripts/build_images.py --update-lock")
    try:
        packages, build_debs = _mmdebstrap(spec, work, wheelhouse, epoch, _pinned(spec, pinned))
    except CommandFailed as exc:
        missing = missing_pins(exc.output, [*pinned, PIP_WHEEL_DEB])
        if not should_re_resolve(exc.output, allowed=lock_fallback):
            raise SystemExit(f"{exc}{_strict_hint(missing)}") from None
    else:
        if set(packages) != set(pinned):
            extra, gone = set(packages) - set(pinned), set(pinned) - set(packages)
            raise SystemExit(
                f"{spec.name}: apt resolved other packages than {spec.lock.name}: "
                f"+{sorted(extra)} -{sorted(gone)}; run --update-lock"
            )
        return RootFs(base_tar, app_tar, packages, build_debs, PINNED)
    return _re_resolved(spec, work, wheelhouse, epoch, pinned, missing)


def _re_resolved(
    spec: ImageSpec,
    work: Path,
    wheelhouse: Path,
    epoch: int,
    pinned: Sequence[str],
    missing: Sequence[str],
) -> RootFs:
    """The lock fallback: resolve as --update-lock would, then build exactly as a
    pinned build of that set builds (same variant, same package list), so the image
    equals a later pinned build from the lock written next to it."""
    _warn(
        [
            f"{spec.name}: the mirror no longer has {', '.join(missing)} "
            f"({spec.lock.name} no longer builds).",
            f"{spec.name}: lock fallback on: re-resolving from "
            f"{', '.join(spec.packages)}. This image is NOT built from the pinned lock.",
        ]
    )
    resolved = _resolve(spec, work)
    selection = _pinned(spec, resolved, pin_pip=False)
    packages, build_debs = _mmdebstrap(spec, work, wheelhouse, epoch, selection)
    if not set(resolved) <= set(packages):
        raise SystemExit(
            f"{spec.name}: the re-resolved build installed other packages than apt "
            f"resolved: -{sorted(set(resolved) - set(packages))}"
        )
    diff = diff_locks([*pinned, PIP_WHEEL_DEB], [*packages, *build_debs])
    _warn([f"{spec.name}: re-resolved, {line}" for line in diff.lines()])
    return RootFs(
        work / "base.tar", work / "app.tar", packages, build_debs, RE_RESOLVED, tuple(missing), diff
    )
