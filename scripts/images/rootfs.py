"""The root filesystem of an image: mmdebstrap from Debian packages pinned by the
image's lock file, with scripts/images/rootfs-hook.sh installing the venv. Gives the
base layer tar, the app layer tar and the package list."""

from __future__ import annotations

import os
from pathlib import Path

from images.commands import run
from images.specs import ARCH, PATH_EXCLUDES, PIP_WHEEL_DEB, SUITE, UID, ImageSpec

__all__ = ["build_rootfs", "debian_sources", "read_lock"]

HOOK = Path(__file__).resolve().parent / "rootfs-hook.sh"


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


def write_lock(spec: ImageSpec, packages: list[str]) -> None:
    header = (
        f"# Debian {SUITE} ({ARCH}) packages of the {spec.name} image, pinned.\n"
        f"# Written by scripts/build_images.py --update-lock from: {', '.join(spec.packages)}"
        + (
            f" (+ {', '.join(spec.extract_no_deps)} without dependencies)"
            if spec.extract_no_deps
            else ""
        )
        + "\n"
    )
    spec.lock.write_text(header + "\n".join(packages) + "\n")


def build_rootfs(
    spec: ImageSpec, work: Path, wheelhouse: Path, epoch: int, *, update_lock: bool
) -> tuple[Path, Path, list[str]]:
    """mmdebstrap: base layer tar, app layer tar (from the hook), package list."""
    base_tar, app_tar, packages_out = work / "base.tar", work / "app.tar", work / "packages"
    pinned = [] if update_lock else read_lock(spec.lock)
    if not update_lock and not pinned:
        raise SystemExit(f"{spec.lock} is missing: run scripts/build_images.py --update-lock")
    no_deps_names = set(spec.extract_no_deps)
    if pinned:
        include = [p for p in pinned if p.split("=")[0] not in no_deps_names]
        no_deps = [p for p in pinned if p.split("=")[0] in no_deps_names]
        variant = spec.variant
    else:
        include, no_deps, variant = (
            list(spec.packages),
            list(spec.extract_no_deps),
            spec.refresh_variant,
        )
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
        "IMAGE_BUILD_DEBS": PIP_WHEEL_DEB,
        "IMAGE_EXTRACT_NO_DEPS": " ".join(no_deps),
        "IMAGE_CONFIG_DIR": str(spec.config_dir or ""),
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
    try:
        run(args, env=env)
    except SystemExit as exc:
        hint = (
            "\nA pinned version may have left the mirror (deb.debian.org keeps only the "
            "newest of each suite): set IMAGE_DEBIAN_SNAPSHOT=<YYYYMMDDTHHMMSSZ> or run "
            "--update-lock."
        )
        raise SystemExit(f"{exc}{hint if pinned else ''}") from None
    resolved = read_lock(packages_out)
    if update_lock:
        write_lock(spec, resolved)
    elif set(resolved) != set(pinned):
        extra, missing = set(resolved) - set(pinned), set(pinned) - set(resolved)
        raise SystemExit(
            f"{spec.name}: apt resolved other packages than {spec.lock.name}: "
            f"+{sorted(extra)} -{sorted(missing)}; run --update-lock"
        )
    return base_tar, app_tar, resolved
