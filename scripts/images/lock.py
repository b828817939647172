"""Lock files of the Debian packages (``pkg=version`` per line) and the lock fallback
(docs/images.md, "When a pinned version leaves the mirror"): which pins apt could not
find, whether to re-resolve, and how the re-resolved set differs from the pinned one.
Pure: text in, values out; scripts/images/rootfs.py does the I/O."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "FALLBACK_ENV",
    "LockDiff",
    "diff_locks",
    "fallback_enabled",
    "lock_text",
    "missing_pins",
    "parse_lock",
    "resolved_by_apt",
    "should_re_resolve",
]

FALLBACK_ENV = "IMAGE_LOCK_FALLBACK"
_TRUE = frozenset({"1", "true", "yes", "on"})
# What apt-get says when a pinned version (or the package) is not in the mirror's
# index: `E: Version '2.36-9+deb12u1' for 'libc6' was not found` and
# `E: Unable to locate package libfoo`.
_VERSION_NOT_FOUND = re.compile(r"^E: Version '([^']+)' for '([^']+)' was not found", re.M)
_PACKAGE_NOT_FOUND = re.compile(r"^E: Unable to locate package (\S+)", re.M)
# apt-get --simulate: `Inst libc6 (2.36-9+deb12u14 Debian:12.15/oldstable [amd64])`.
_SIMULATED_INSTALL = re.compile(r"^Inst (\S+) \((\S+) ", re.M)


def parse_lock(lines: Iterable[str]) -> dict[str, str]:
    """``{package: version}`` from lock lines; comments and blank lines skipped."""
    pins: dict[str, str] = {}
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, version = line.partition("=")
        if not sep or not name or not version:
            raise ValueError(f"not a pkg=version lock line: {line!r}")
        pins[name] = version
    return pins


@dataclass(frozen=True)
class LockDiff:
    """How a resolved package set differs from the pinned one."""

    changed: tuple[tuple[str, str, str], ...] = ()  # (package, pinned, resolved)
    added: tuple[str, ...] = ()  # pkg=version, resolved only
    removed: tuple[str, ...] = ()  # pkg=version, pinned only

    def __bool__(self) -> bool:
        return bool(self.changed or self.added or self.removed)

    def as_json(self) -> dict[str, object]:
        return {
            "changed": [
                {"package": name, "pinned": old, "resolved": new} for name, old, new in self.changed
            ],
            "added": list(self.added),
            "removed": list(self.removed),
        }

    def lines(self) -> list[str]:
        """One line per difference, for the build log."""
        return [
            *(f"{name}: {old} -> {new}" for name, old, new in self.changed),
            *(f"+ {pin}" for pin in self.added),
            *(f"- {pin}" for pin in self.removed),
        ]


def diff_locks(pinned: Iterable[str], resolved: Iterable[str]) -> LockDiff:
    """Compare two package sets given as lock lines (``pkg=version``), sorted by name."""
    old, new = parse_lock(pinned), parse_lock(resolved)
    return LockDiff(
        changed=tuple(
            (name, old[name], new[name])
            for name in sorted(old.keys() & new.keys())
            if old[name] != new[name]
        ),
        added=tuple(f"{name}={new[name]}" for name in sorted(new.keys() - old.keys())),
        removed=tuple(f"{name}={old[name]}" for name in sorted(old.keys() - new.keys())),
    )


def missing_pins(output: str, pins: Iterable[str] = ()) -> tuple[str, ...]:
    """The pins apt could not find in the mirror's index, from its output, as
    ``pkg=version``; a package apt cannot locate at all is named as ``pins`` pin it (or
    bare). Empty for any other failure."""
    pinned = parse_lock(pins)
    found = [f"{name}={version}" for version, name in _VERSION_NOT_FOUND.findall(output)]
    found += [
        f"{name}={pinned[name]}" if name in pinned else name
        for name in _PACKAGE_NOT_FOUND.findall(output)
    ]
    return tuple(sorted(set(found)))


def resolved_by_apt(output: str) -> tuple[str, ...]:
    """The package set apt would install, as sorted ``pkg=version``, from the output of
    ``mmdebstrap --simulate --verbose`` (its apt-get runs print ``Inst`` lines; a
    package may appear in more than one of them)."""
    pins: dict[str, str] = {}
    for name, version in _SIMULATED_INSTALL.findall(output):
        if pins.setdefault(name, version) != version:
            raise ValueError(f"apt chose two versions of {name}: {pins[name]}, {version}")
    if not pins:
        raise ValueError("no `Inst` line in the simulated install")
    return tuple(f"{name}={pins[name]}" for name in sorted(pins))


def fallback_enabled(flag: bool, environ: Mapping[str, str]) -> bool:
    """``--lock-fallback`` or ``IMAGE_LOCK_FALLBACK=1``."""
    return flag or environ.get(FALLBACK_ENV, "").strip().lower() in _TRUE


def should_re_resolve(output: str, *, allowed: bool) -> bool:
    """Re-resolve only when allowed and the pinned build failed because the mirror no
    longer has a pinned version; any other failure stays a failure."""
    return allowed and bool(missing_pins(output))


def lock_text(
    *, image: str, suite: str, arch: str, packages: Iterable[str], comments: Sequence[str]
) -> str:
    """A lock file: a header naming the image, ``comments``, then ``pkg=version`` sorted."""
    header = [f"# Debian {suite} ({arch}) packages of the {image} image, pinned."]
    header += [f"# {line}" for line in comments]
    return "\n".join([*header, *sorted(packages)]) + "\n"
