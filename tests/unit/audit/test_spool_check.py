"""`appliance doctor` on the audit spool: off, on, unwritable, on a network filesystem."""

from __future__ import annotations

from pathlib import Path

from appliance.audit.spool_check import filesystem_of, spool_findings
from appliance.config import Settings

MOUNTS = """\
/dev/sda1 / ext4 rw,relatime 0 0
tmpfs /run tmpfs rw 0 0
server:/export /mnt/shared nfs4 rw 0 0
/dev/sdb1 /mnt/shared/local xfs rw 0 0
"""


def test_the_longest_mount_point_decides() -> None:
    assert filesystem_of(Path("/mnt/shared/spool"), MOUNTS) == "nfs4"
    assert filesystem_of(Path("/mnt/shared/local/spool"), MOUNTS) == "xfs"
    assert filesystem_of(Path("/mnt/sharedx"), MOUNTS) == "ext4"
    assert filesystem_of(Path("/run"), MOUNTS) == "tmpfs"


def _settings(tmp_path: Path, **spool: object) -> Settings:
    return Settings(data_dir=tmp_path / "data", audit={"spool": spool})


def test_off_is_one_line(tmp_path: Path) -> None:
    assert [level for level, _ in spool_findings(_settings(tmp_path))] == ["ok"]


def test_on_a_local_disk_it_is_ok(tmp_path: Path) -> None:
    found = spool_findings(_settings(tmp_path, enabled=True), MOUNTS)
    assert [level for level, _ in found] == ["ok"]
    assert str(tmp_path / "data" / "audit-spool") in found[0][1]


def test_on_nfs_it_fails_naming_the_filesystem(tmp_path: Path) -> None:
    mounts = MOUNTS + f"server:/x {tmp_path} nfs rw 0 0\n"
    found = spool_findings(_settings(tmp_path, enabled=True), mounts)
    assert ("fail" in [level for level, _ in found]) and "on nfs" in found[-1][1]


def test_an_unwritable_directory_fails(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import appliance.audit.spool_check as module

    monkeypatch.setattr(module.os, "access", lambda path, mode: False)
    found = spool_findings(_settings(tmp_path, enabled=True), MOUNTS)
    assert found[-1][0] == "fail" and "not writable" in found[-1][1]
