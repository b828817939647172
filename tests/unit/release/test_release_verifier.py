"""appliance/release/release_verifier.py and manifest.py: a signed MANIFEST over every
file; any flipped byte, missing, added or re-signed file fails, naming the cause. The
standalone copy runs as a script with nothing from the appliance importable."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.audit.checkpoint import NoteSigner
from appliance.errors import BundleError
from appliance.release import release_verifier
from appliance.release.manifest import (
    generate_release_key,
    load_release_signer,
    manifest_body,
    write_manifest,
)
from appliance.release.release_verifier import (
    BundleVerificationError,
    parse_listing,
    verify_bundle,
)

FILES = {
    "bundle.json": b'{"version": "0.1.0"}\n',
    "wheelhouse/a-1.0-py3-none-any.whl": b"PK\x03\x04 wheel bytes" * 100,
    "wheelhouse/requirements-gateway.txt": b"a==1.0 --hash=sha256:00\n",
    "helm/appliance-0.1.0.tgz": bytes(range(256)) * 10,
    "models/deepseek-v3.yaml": "name: deepseek-v3\n# é\n".encode(),
}


@pytest.fixture
def signer() -> NoteSigner:
    return NoteSigner.generate("appliance-release")


@pytest.fixture
def bundle(tmp_path: Path, signer: NoteSigner) -> Path:
    root = tmp_path / "bundle"
    for name, data in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    write_manifest(root, signer, ["sovereign-appliance 0.1.0"])
    return root


def key_of(signer: NoteSigner) -> str:
    return signer.verifier().verifier_key()


def failure(bundle: Path, key: str) -> str:
    with pytest.raises(BundleVerificationError) as caught:
        verify_bundle(bundle, key)
    return str(caught.value)


def test_a_signed_bundle_verifies(bundle: Path, signer: NoteSigner) -> None:
    listing = verify_bundle(bundle, key_of(signer))
    assert set(listing) == set(FILES)
    assert listing["bundle.json"][1] == len(FILES["bundle.json"])


@pytest.mark.parametrize("name", sorted(FILES))
def test_one_flipped_byte_in_any_file_is_named(bundle: Path, signer: NoteSigner, name: str) -> None:
    path = bundle / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    assert failure(bundle, key_of(signer)) == f"altered: {name} (sha256 differs)"


def test_a_truncated_file_is_named(bundle: Path, signer: NoteSigner) -> None:
    path = bundle / "helm/appliance-0.1.0.tgz"
    path.write_bytes(path.read_bytes()[:100])
    assert failure(bundle, key_of(signer)).startswith("altered: helm/appliance-0.1.0.tgz (size")


@pytest.mark.parametrize("name", sorted(FILES))
def test_a_dropped_file_is_named(bundle: Path, signer: NoteSigner, name: str) -> None:
    (bundle / name).unlink()
    assert failure(bundle, key_of(signer)) == f"missing: {name}"


def test_an_added_file_is_named(bundle: Path, signer: NoteSigner) -> None:
    (bundle / "wheelhouse" / "evil-6.6-py3-none-any.whl").write_bytes(b"x")
    assert failure(bundle, key_of(signer)).startswith(
        "unlisted: wheelhouse/evil-6.6-py3-none-any.whl"
    )


def test_a_symlink_is_refused(bundle: Path, signer: NoteSigner) -> None:
    os.symlink("/etc/passwd", bundle / "models" / "link.yaml")
    assert "symbolic link: models/link.yaml" in failure(bundle, key_of(signer))


def test_resigned_with_another_key_is_refused(bundle: Path, signer: NoteSigner) -> None:
    (bundle / "extra.txt").write_text("added by someone else\n")
    write_manifest(bundle, NoteSigner.generate("appliance-release"), [])  # same name, new key
    message = failure(bundle, key_of(signer))
    assert "not signed by the release key appliance-release+" in message


def test_an_edited_manifest_breaks_the_signature(bundle: Path, signer: NoteSigner) -> None:
    manifest = bundle / "MANIFEST"
    text = manifest.read_text()
    manifest.write_text(text.replace("# sovereign-appliance 0.1.0", "# sovereign-appliance 9.9.9"))
    assert "signature by appliance-release is wrong" in failure(bundle, key_of(signer))


def test_a_wrong_key_text_is_refused(bundle: Path, signer: NoteSigner) -> None:
    good = key_of(signer)
    name, _key_id, encoded = good.split("+", 2)
    assert "id does not match" in failure(bundle, f"{name}+00000000+{encoded}")
    assert "malformed" in failure(bundle, "not-a-key")


def test_no_manifest_is_not_a_bundle(tmp_path: Path, signer: NoteSigner) -> None:
    assert "not a release bundle" in failure(tmp_path, key_of(signer))


@pytest.mark.parametrize(
    "line",
    [
        f"{'0' * 64} 1 ../etc/passwd",
        f"{'0' * 64} 1 /etc/passwd",
        f"{'0' * 64} 1 MANIFEST",
        f"{'0' * 64} x a",
        "short 1 a",
    ],
)
def test_unsafe_or_malformed_listings_are_refused(line: str) -> None:
    with pytest.raises(BundleVerificationError):
        parse_listing(f"appliance-release-bundle/v1\n{line}\n")


def test_listing_must_be_sorted_without_repeats() -> None:
    zero = "0" * 64
    with pytest.raises(BundleVerificationError, match="sorted"):
        parse_listing(f"appliance-release-bundle/v1\n{zero} 1 b\n{zero} 1 a\n")


def test_manifest_body_refuses_control_characters() -> None:
    with pytest.raises(BundleError):
        manifest_body({"a\nb": ("0" * 64, 1)}, [])


def test_keygen_writes_a_private_key_only_the_owner_reads(tmp_path: Path) -> None:
    private, public = generate_release_key(tmp_path)
    assert private.stat().st_mode & 0o777 == 0o600
    signer = load_release_signer(private)
    assert public.read_text().strip() == key_of(signer)
    with pytest.raises(BundleError, match="exists"):
        generate_release_key(tmp_path)
    with pytest.raises(BundleError, match="not a release signing key"):
        load_release_signer(public)


def test_the_standalone_verifier_runs_with_nothing_of_the_appliance(
    bundle: Path, signer: NoteSigner, tmp_path: Path
) -> None:
    script = tmp_path / "elsewhere" / "verify_bundle.py"
    script.parent.mkdir()
    shutil.copy2(release_verifier.__file__, script)
    key_file = tmp_path / "release.pub"
    key_file.write_text(key_of(signer) + "\n")
    # -I: isolated mode (no PYTHONPATH, no current directory on the path); the import
    # hook below makes any attempt to import the appliance fail loudly.
    guard = (
        "import sys, runpy; sys.modules['appliance'] = None; "
        f"sys.argv = ['verify_bundle.py', {str(bundle)!r}, '--key', {str(key_file)!r}]; "
        f"runpy.run_path({str(script)!r}, run_name='__main__')"
    )
    ok = subprocess.run([sys.executable, "-I", "-c", guard], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith(f"OK: {len(FILES)} files")
    (bundle / "bundle.json").write_text("{}\n")
    bad = subprocess.run([sys.executable, "-I", "-c", guard], capture_output=True, text=True)
    assert bad.returncode == 1
    assert "FAILED: altered: bundle.json" in bad.stderr
