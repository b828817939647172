"""The release bundle end to end (issue 14), with the real CLI: `bundle create` on the
connected side (the gateway install set, built from the local index), `bundle verify`,
then `bundle install` inside a network namespace with no route out (`unshare -n`).
Bad input each gets a clear error and installs nothing: another key, another Python,
another CPU architecture, a full disk. (The CPU engine set and `appliance up` from the
installed venv: tests/e2e/test_bundle_e2e.py.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.audit.checkpoint import NoteSigner
from appliance.release.manifest import load_release_signer, write_manifest

ROOT = Path(__file__).resolve().parents[2]
APPLIANCE = [sys.executable, "-m", "appliance.cli"]


@dataclass
class Built:
    bundle: Path
    private: Path
    public: Path


def cli(*args: str, offline: bool = False, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = [*APPLIANCE, *args]
    if offline:
        command = ["unshare", "-n", *command]
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    env["COLUMNS"] = "200"  # one line per message, whatever the terminal
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


def no_route_out() -> bool:
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    return probe.returncode == 0


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    work = tmp_path_factory.mktemp("bundle")
    cli("bundle", "keygen", str(work / "keys"))
    private, public = work / "keys" / "release.key", work / "keys" / "release.pub"
    bundle = work / "bundle"
    cli("bundle", "create", str(bundle), "--signing-key", str(private), "--set", "gateway",
        "--source", str(ROOT))  # fmt: skip
    return Built(bundle, private, public)


def edited_copy(built: Built, tmp_path: Path, info_changes: dict[str, object]) -> Path:
    """A copy of the bundle (hard links) with bundle.json changed and MANIFEST re-signed
    by the release key: a genuine bundle for another target."""
    copy = tmp_path / "copy"
    shutil.copytree(built.bundle, copy, copy_function=os.link)
    info = json.loads((copy / "bundle.json").read_text())
    info.update(info_changes)
    for name in ("bundle.json", "MANIFEST"):
        (copy / name).unlink()  # never write through a hard link into the original
    (copy / "bundle.json").write_text(json.dumps(info))
    write_manifest(copy, load_release_signer(built.private), [])
    return copy


def test_the_bundle_holds_every_part_and_lists_every_byte(built: Built) -> None:
    bundle = built.bundle
    for expected in (
        "verify_bundle.py", "README.txt", "bundle.json", "wheelhouse/requirements-gateway.txt",
        "sbom/wheelhouse-gateway.cdx.json", "helm/appliance-0.1.0.tgz",
        "deploy/appliance-deploy-0.1.0.tar.gz", "models/deepseek-v3.yaml",
    ):  # fmt: skip
        assert (bundle / expected).is_file(), expected
    requirements = (bundle / "wheelhouse/requirements-gateway.txt").read_text().splitlines()
    pinned = [line for line in requirements if not line.startswith("#")]
    assert any(line.startswith("sovereign-appliance==0.1.0 --hash=sha256:") for line in pinned)
    assert all("--hash=sha256:" in line for line in pinned)
    assert not any(line.startswith(("vllm", "torch")) for line in pinned)  # gateway only
    sbom = json.loads((bundle / "sbom/wheelhouse-gateway.cdx.json").read_text())
    assert sbom["bomFormat"] == "CycloneDX"
    assert {c["name"] for c in sbom["components"]} >= {"fastapi", "cryptography"}
    listed = (bundle / "MANIFEST").read_text().split("\n\n")[0].splitlines()[1:]
    files = {line.split(" ", 2)[2] for line in listed if not line.startswith("#")}
    on_disk = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()}
    assert files == on_disk - {"MANIFEST"}


def test_verify_with_the_release_key_and_the_standalone_script(built: Built) -> None:
    done = cli("bundle", "verify", str(built.bundle), "--key", str(built.public))
    assert "OK: bundle 0.1.0" in done.stdout
    script = subprocess.run(
        [sys.executable, "-I", str(built.bundle / "verify_bundle.py"), str(built.bundle),
         "--key", str(built.public)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert script.returncode == 0 and script.stdout.startswith("OK:"), script.stderr


def test_a_bundle_signed_by_another_key_is_refused(built: Built, tmp_path: Path) -> None:
    other = NoteSigner.generate("appliance-release").verifier().verifier_key()
    done = cli("bundle", "verify", str(built.bundle), "--key", other, check=False)
    assert done.returncode == 1
    assert "not signed by the release key" in done.stderr


@pytest.mark.skipif(not no_route_out(), reason="unshare -n needs root (network namespace)")
def test_install_with_no_route_out_then_the_venv_runs(built: Built, tmp_path: Path) -> None:
    prefix = tmp_path / "opt"
    done = cli("bundle", "install", str(built.bundle), "--key", str(built.public),
               "--prefix", str(prefix), offline=True)  # fmt: skip
    link = prefix / "venv"
    assert link.is_symlink() and (link / ".bundle-install-complete").is_file()
    values = json.loads(done.stdout[done.stdout.index("{") :])
    assert values["ansible"]["appliance_wheelhouse"] == str(built.bundle / "wheelhouse")
    installed = link / "bin" / "appliance"
    plan = subprocess.run(
        ["unshare", "-n", str(installed), "plan", "--model", "deepseek-v3", "--gpu", "h200",
         "-f", "json"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)["fits"] is True
    where = subprocess.run(
        [str(link / "bin" / "python"), "-c", "import appliance; print(appliance.__file__)"],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert where.stdout.startswith(str(prefix)), where.stdout  # not the checkout
    again = cli("bundle", "install", str(built.bundle), "--key", str(built.public),
                "--prefix", str(prefix), offline=True)  # fmt: skip
    assert "installed before" in again.stdout


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"python": "3.99"}, "this bundle is for Python 3.99"),
        ({"platform": "manylinux_2_28_aarch64"}, "make a bundle for this CPU architecture"),
        ({"platform": "manylinux_2_99_x86_64"}, "this bundle needs glibc 2.99"),
        ({"sets": ["cpu"]}, "has no 'gateway' install set"),
    ],
)
def test_a_bundle_for_another_target_is_refused_and_installs_nothing(
    built: Built, tmp_path: Path, changes: dict[str, object], message: str
) -> None:
    copy = edited_copy(built, tmp_path, changes)
    prefix = tmp_path / "opt"
    done = cli("bundle", "install", str(copy), "--key", str(built.public), "--prefix",
               str(prefix), check=False)  # fmt: skip
    assert done.returncode == 1 and message in done.stderr, done.stderr
    assert not (prefix / "venv").exists() and not any((prefix / "venvs").glob("*"))


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_full_disk_is_named_and_the_live_venv_stays(built: Built, tmp_path: Path) -> None:
    # 48 MiB: more than the gateway set's wheels (about 27 MiB, so the early space
    # check passes), less than they take installed: the disk fills during the install.
    prefix = tmp_path / "small"
    prefix.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(prefix)],
                             capture_output=True, text=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        (prefix / "venvs" / "previous").mkdir(parents=True)
        (prefix / "venv").symlink_to(prefix / "venvs" / "previous")
        done = cli("bundle", "install", str(built.bundle), "--key", str(built.public),
                   "--prefix", str(prefix), check=False)  # fmt: skip
        assert done.returncode == 1
        assert "the disk is full" in done.stderr, done.stderr
        assert os.readlink(prefix / "venv") == str(prefix / "venvs" / "previous")
        assert [p.name for p in (prefix / "venvs").iterdir()] == ["previous"]
    finally:
        subprocess.run(["umount", str(prefix)], check=False)
