"""The pure parts of the image build's lock fallback (scripts/images/lock.py): which pins
apt could not find, when to re-resolve, how a re-resolved set differs from the lock."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[3] / "scripts"
if str(SCRIPTS) not in sys.path:  # scripts/build_images.py imports its helpers the same way
    sys.path.insert(0, str(SCRIPTS))

from images.lock import (  # noqa: E402
    LockDiff,
    diff_locks,
    fallback_enabled,
    lock_text,
    missing_pins,
    parse_lock,
    resolved_by_apt,
    should_re_resolve,
)

# mmdebstrap's output when the mirror has moved on (captured on bookworm, shortened).
MIRROR_MOVED_ON = """\
I: downloading packages with apt...
Reading package lists...
Package libc6 is not available, but is referred to by another package.
E: Version '2.36-9+deb12u1' for 'libc6' was not found
E: Version '1.2.13.dfsg-1' for 'zlib1g' was not found
E: apt download failed: E: apt-get --yes install libc6=2.36-9+deb12u1 zlib1g failed
E: mmdebstrap failed to run
"""
PIP_GONE = "E: Version '23.0.1+dfsg-1' for 'python3-pip-whl' was not found\n"
PACKAGE_GONE = "E: Unable to locate package libfoo1\n"
NETWORK_DOWN = """\
E: Failed to fetch http://deb.debian.org/debian/dists/bookworm/InRelease  Temporary failure
E: mmdebstrap failed to run
"""
HOOK_FAILED = "cp: cannot stat 'x': No such file or directory\nE: setup failed\n"


def test_parse_lock_skips_comments_and_blank_lines() -> None:
    text = "# header\n\nlibc6=2.36-9+deb12u14\n  libcrypt1=1:4.4.33-2  \n"
    assert parse_lock(text.splitlines()) == {"libc6": "2.36-9+deb12u14", "libcrypt1": "1:4.4.33-2"}


def test_parse_lock_refuses_a_line_without_a_version() -> None:
    with pytest.raises(ValueError, match="pkg=version"):
        parse_lock(["libc6"])


def test_missing_pins_reads_apts_errors() -> None:
    assert missing_pins(MIRROR_MOVED_ON) == ("libc6=2.36-9+deb12u1", "zlib1g=1.2.13.dfsg-1")
    assert missing_pins(PIP_GONE) == ("python3-pip-whl=23.0.1+dfsg-1",)
    assert missing_pins(PACKAGE_GONE) == ("libfoo1",)
    assert missing_pins(PACKAGE_GONE, ["libfoo1=1.0-1", "libc6=2.36-9"]) == ("libfoo1=1.0-1",)


@pytest.mark.parametrize("output", [NETWORK_DOWN, HOOK_FAILED, ""])
def test_other_failures_name_no_missing_pin(output: str) -> None:
    assert missing_pins(output) == ()


@pytest.mark.parametrize(
    ("output", "allowed", "expected"),
    [
        (MIRROR_MOVED_ON, True, True),
        (PIP_GONE, True, True),
        (PACKAGE_GONE, True, True),
        (MIRROR_MOVED_ON, False, False),  # strict unless asked: the build fails
        (NETWORK_DOWN, True, False),  # fallback never hides other failures
        (HOOK_FAILED, True, False),
    ],
)
def test_should_re_resolve(output: str, allowed: bool, expected: bool) -> None:
    assert should_re_resolve(output, allowed=allowed) is expected


@pytest.mark.parametrize(
    ("flag", "environ", "expected"),
    [
        (False, {}, False),
        (True, {}, True),
        (False, {"IMAGE_LOCK_FALLBACK": "1"}, True),
        (False, {"IMAGE_LOCK_FALLBACK": "true"}, True),
        (False, {"IMAGE_LOCK_FALLBACK": "0"}, False),
        (False, {"IMAGE_LOCK_FALLBACK": ""}, False),
    ],
)
def test_fallback_enabled_by_flag_or_environment(
    flag: bool, environ: dict[str, str], expected: bool
) -> None:
    assert fallback_enabled(flag, environ) is expected


def test_diff_locks_names_changed_added_and_removed_packages() -> None:
    pinned = ["base-files=12.4+deb12u14", "libc6=2.36-9+deb12u13", "libold1=1.0-1", "tzdata=2025a"]
    resolved = [
        "base-files=12.4+deb12u15",
        "libc6=2.36-9+deb12u14",
        "libnew2=2.0-1",
        "tzdata=2025a",
    ]
    diff = diff_locks(pinned, resolved)
    assert diff == LockDiff(
        changed=(
            ("base-files", "12.4+deb12u14", "12.4+deb12u15"),
            ("libc6", "2.36-9+deb12u13", "2.36-9+deb12u14"),
        ),
        added=("libnew2=2.0-1",),
        removed=("libold1=1.0-1",),
    )
    assert diff.as_json() == {
        "changed": [
            {"package": "base-files", "pinned": "12.4+deb12u14", "resolved": "12.4+deb12u15"},
            {"package": "libc6", "pinned": "2.36-9+deb12u13", "resolved": "2.36-9+deb12u14"},
        ],
        "added": ["libnew2=2.0-1"],
        "removed": ["libold1=1.0-1"],
    }
    assert diff.lines() == [
        "base-files: 12.4+deb12u14 -> 12.4+deb12u15",
        "libc6: 2.36-9+deb12u13 -> 2.36-9+deb12u14",
        "+ libnew2=2.0-1",
        "- libold1=1.0-1",
    ]


def test_identical_locks_differ_in_nothing() -> None:
    lock = ["libc6=2.36-9+deb12u14", "zlib1g=1:1.2.13.dfsg-1"]
    assert not diff_locks(lock, list(reversed(lock)))


def test_lock_text_round_trips() -> None:
    packages = ["zlib1g=1:1.2.13.dfsg-1", "libc6=2.36-9+deb12u14"]
    text = lock_text(
        image="appliance-gateway", suite="bookworm", arch="amd64", packages=packages,
        comments=["Written by a test"],
    )  # fmt: skip
    assert text.splitlines()[:2] == [
        "# Debian bookworm (amd64) packages of the appliance-gateway image, pinned.",
        "# Written by a test",
    ]
    assert text.splitlines()[2:] == sorted(packages)
    assert parse_lock(text.splitlines()) == parse_lock(packages)


def test_the_repository_locks_parse() -> None:
    for lock in (SCRIPTS / "images").glob("*.lock"):
        pins = parse_lock(lock.read_text().splitlines())
        assert "libc6" in pins, lock.name


# mmdebstrap --simulate --verbose --variant=essential (shortened): the essential set and
# the included packages are resolved by separate apt-get runs.
SIMULATED = """\
I: running apt-get update...
Inst libc6 (2.36-9+deb12u14 Debian:12.15/oldstable, Debian-Security:12/oldstable-security [amd64])
Conf libc6 (2.36-9+deb12u14 Debian:12.15/oldstable, Debian-Security:12/oldstable-security [amd64])
Inst zlib1g (1:1.2.13.dfsg-1+deb12u1 Debian:12.15/oldstable [amd64])
Inst libc6 (2.36-9+deb12u14 Debian:12.15/oldstable, Debian-Security:12/oldstable-security [amd64])
Inst openssl (3.0.20-1~deb12u2 Debian:12.15/oldstable [amd64])
I: success in 5.7 seconds
"""


def test_resolved_by_apt_reads_the_simulated_install() -> None:
    assert resolved_by_apt(SIMULATED) == (
        "libc6=2.36-9+deb12u14",
        "openssl=3.0.20-1~deb12u2",
        "zlib1g=1:1.2.13.dfsg-1+deb12u1",
    )


def test_resolved_by_apt_refuses_two_versions_or_none() -> None:
    with pytest.raises(ValueError, match="two versions of libc6"):
        resolved_by_apt(SIMULATED + "Inst libc6 (2.36-9+deb12u15 Debian [amd64])\n")
    with pytest.raises(ValueError, match="no `Inst` line"):
        resolved_by_apt(NETWORK_DOWN)
