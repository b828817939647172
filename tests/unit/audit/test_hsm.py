"""appliance/audit/hsm.py, hsm_session.py, hsm_admin.py against a real SoftHSM2 token:
keys made or imported there, never readable, signing and wrapping done there."""

from __future__ import annotations

import os
from pathlib import Path

import pkcs11
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pkcs11 import Attribute, ObjectClass
from typer.testing import CliRunner

from appliance.audit import bundle_verifier, hsm_session
from appliance.audit.checkpoint import (
    Checkpoint,
    NoteSigner,
    NoteVerifier,
    sign_checkpoint,
    verify_checkpoint,
)
from appliance.audit.hsm import Pkcs11MasterKey, open_hsm_keys
from appliance.audit.hsm_admin import inspect_token, key_backend_findings, provision
from appliance.audit.hsm_session import TokenConfig, TokenSession
from appliance.audit.wiring import audit_key_provider, audit_signer
from appliance.cli.main import app
from appliance.config import Settings
from appliance.errors import ConfigurationError, VerificationError
from appliance.keys.provider import FileKeyProvider
from tests.support.audit import ORIGIN
from tests.support.softhsm import PIN, SoftHsm, new_softhsm

CONTEXT = b"appliance-audit/subject-key/v1\nk1\napikey:alice"


@pytest.fixture
def hsm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SoftHsm:
    return new_softhsm(tmp_path, monkeypatch)


@pytest.fixture
def provisioned(hsm: SoftHsm) -> SoftHsm:
    provision(hsm.config(), ORIGIN)
    return hsm


def test_master_key_wraps_in_the_token_in_the_file_layout(provisioned: SoftHsm) -> None:
    keys = open_hsm_keys(provisioned.config())
    subject_key = os.urandom(32)

    wrapped = keys.master_key.wrap(subject_key, context=CONTEXT)

    assert len(wrapped) == 12 + 32 + 16  # IV, key, tag: as FileKeyProvider lays it out
    assert subject_key not in wrapped
    assert keys.master_key.unwrap(wrapped, context=CONTEXT) == subject_key
    assert keys.master_key.key_id.startswith("pkcs11:appliance-audit-master:")
    with pytest.raises(VerificationError):  # bound to the key id and subject
        keys.master_key.unwrap(wrapped, context=CONTEXT.replace(b"alice", b"bob"))
    with pytest.raises(VerificationError):
        keys.master_key.unwrap(wrapped[:-1] + bytes([wrapped[-1] ^ 1]), context=CONTEXT)


def test_an_imported_file_master_key_opens_what_the_file_key_wrapped(hsm: SoftHsm) -> None:
    master = os.urandom(32)
    file_key = FileKeyProvider(master)
    signer = NoteSigner.generate(ORIGIN)
    provision(hsm.config(), ORIGIN, master_key=master, signing_key=signer)
    token_key = open_hsm_keys(hsm.config()).master_key
    subject_key = os.urandom(32)

    assert token_key.unwrap(file_key.wrap(subject_key, context=CONTEXT), context=CONTEXT) == (
        subject_key
    )
    assert file_key.unwrap(token_key.wrap(subject_key, context=CONTEXT), context=CONTEXT) == (
        subject_key
    )


def test_a_checkpoint_signed_in_the_token_verifies_with_the_existing_code(
    provisioned: SoftHsm,
) -> None:
    report = inspect_token(provisioned.config(), ORIGIN)
    signer = open_hsm_keys(provisioned.config()).signer(ORIGIN)
    checkpoint = Checkpoint(ORIGIN, 7, bytes(range(32)))

    note = sign_checkpoint(checkpoint, signer)

    # The public key exported from the token, as an auditor would receive it.
    verifier = NoteVerifier.from_verifier_key(report.verifier_key)
    assert verify_checkpoint(note, verifier, origin=ORIGIN) == checkpoint
    # The standalone verifier (no appliance code) agrees.
    key = bundle_verifier.parse_key(report.verifier_key)
    assert bundle_verifier.open_checkpoint(note, key) == (ORIGIN, 7, bytes(range(32)))
    with pytest.raises(ValueError, match="cannot be exported"):
        signer.signer_key()


def test_an_imported_signing_key_signs_the_same_bytes(hsm: SoftHsm) -> None:
    software = NoteSigner.generate(ORIGIN)
    report = provision(hsm.config(), ORIGIN, master_key=os.urandom(32), signing_key=software)
    token = open_hsm_keys(hsm.config()).signer(ORIGIN)

    assert report.verifier_key == software.verifier().verifier_key()
    body = Checkpoint(ORIGIN, 3, bytes(32))
    assert sign_checkpoint(body, token) == sign_checkpoint(body, software)  # Ed25519 is
    # deterministic (RFC 8032): the same key signs the same bytes in or out of the token
    assert not report.signing.local and not report.master.local


def test_key_material_is_sensitive_and_never_extractable(provisioned: SoftHsm) -> None:
    report = inspect_token(provisioned.config(), ORIGIN)
    for facts in (report.signing, report.master):
        assert facts.sensitive and not facts.extractable, facts
        assert facts.always_sensitive and facts.never_extractable and facts.local, facts
    # Asking the token for the values, or to wrap them out, is refused.
    session = pkcs11.lib(str(provisioned.module)).get_token(token_label=provisioned.label)
    with session.open(user_pin=PIN) as live:
        secrets = [
            live.get_key(object_class=ObjectClass.SECRET_KEY, label="appliance-audit-master"),
            live.get_key(object_class=ObjectClass.PRIVATE_KEY, label="appliance-audit-signing"),
        ]
        for key in secrets:
            assert key[Attribute.SENSITIVE] is True
            assert key[Attribute.EXTRACTABLE] is False
            with pytest.raises(pkcs11.AttributeSensitive):
                key[Attribute.VALUE]
        wrapping = live.generate_key(pkcs11.KeyType.AES, 256, store=False)
        for key in secrets:
            with pytest.raises(pkcs11.KeyUnextractable):
                wrapping.wrap_key(key)


def test_init_keeps_existing_keys_and_refuses_a_different_import(provisioned: SoftHsm) -> None:
    first = inspect_token(provisioned.config(), ORIGIN)
    again = provision(provisioned.config(), ORIGIN)
    assert again.done == ()
    assert (again.verifier_key, again.master_key_id) == (first.verifier_key, first.master_key_id)
    with pytest.raises(ConfigurationError, match="different signing key"):
        provision(
            provisioned.config(), ORIGIN,
            master_key=os.urandom(32), signing_key=NoteSigner.generate(ORIGIN),
        )  # fmt: skip


def test_a_wrong_pin_is_named(hsm: SoftHsm) -> None:
    hsm.pin_file.write_text("00000000\n", encoding="ascii")
    with pytest.raises(ConfigurationError, match=r"refused the PIN in .*hsm\.pin"):
        TokenSession(hsm.config()).open()


def test_a_missing_token_module_or_pin_file_is_named(hsm: SoftHsm, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no PKCS#11 token 'elsewhere'"):
        TokenSession(TokenConfig(hsm.module, "elsewhere", hsm.pin_file)).open()
    with pytest.raises(ConfigurationError, match="module not found"):
        TokenSession(TokenConfig(tmp_path / "nope.so", hsm.label, hsm.pin_file)).open()
    not_a_module = tmp_path / "not-a-module.so"
    not_a_module.write_bytes(b"\0" * 64)
    with pytest.raises(ConfigurationError, match="cannot load PKCS#11 module"):
        TokenSession(TokenConfig(not_a_module, hsm.label, hsm.pin_file)).open()
    with pytest.raises(ConfigurationError, match="PIN file not found"):
        TokenSession(TokenConfig(hsm.module, hsm.label, tmp_path / "no.pin")).open()
    hsm.pin_file.chmod(0o644)
    with pytest.raises(ConfigurationError, match="readable by others"):
        TokenSession(hsm.config()).open()


def test_missing_keys_and_mechanisms_are_named(
    hsm: SoftHsm, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigurationError, match="no secret key labelled 'appliance-audit-mas"):
        open_hsm_keys(hsm.config())
    provision(hsm.config(), ORIGIN)
    with pytest.raises(ConfigurationError, match="no public key labelled 'other'"):
        open_hsm_keys(hsm.config(signing_key_label="other"))
    # A token without a mechanism the appliance needs (SoftHSM2 has no SHA3 HMAC).
    monkeypatch.setitem(
        hsm_session.REQUIRED_MECHANISMS, "CKM_SHA3_256_HMAC", pkcs11.Mechanism.SHA3_256_HMAC
    )
    with pytest.raises(ConfigurationError, match="lacks CKM_SHA3_256_HMAC"):
        open_hsm_keys(hsm.config())


def test_a_token_that_chooses_its_own_gcm_iv_is_refused(provisioned: SoftHsm) -> None:
    class OwnIv(Pkcs11MasterKey):  # as AWS CloudHSM does: the IV given is not the IV used
        def wrap(self, key: bytes, *, context: bytes) -> bytes:
            return os.urandom(12) + super().wrap(key, context=context)[12:]

    session = TokenSession(provisioned.config()).open()
    assert Pkcs11MasterKey(session).key_id
    with pytest.raises(ConfigurationError, match="does not unwrap what it wrapped"):
        OwnIv(session)


def test_a_restarted_token_is_reconnected(provisioned: SoftHsm) -> None:
    keys = open_hsm_keys(provisioned.config())
    verifier = keys.verifier(ORIGIN)
    provisioned.reinitialize()  # every session handle is gone, as after an HSM restart

    note = sign_checkpoint(Checkpoint(ORIGIN, 1, bytes(32)), keys.signer(ORIGIN))

    verify_checkpoint(note, verifier, origin=ORIGIN)


def test_an_unreachable_token_fails_closed_then_recovers(provisioned: SoftHsm) -> None:
    keys = open_hsm_keys(provisioned.config())
    wrapped = keys.master_key.wrap(b"k" * 32, context=CONTEXT)
    provisioned.remove_token()

    with pytest.raises(OSError, match="cannot be reached to unwrap a subject key"):
        keys.master_key.unwrap(wrapped, context=CONTEXT)
    with pytest.raises(OSError, match="sign"):
        keys.signing_key.sign(b"checkpoint")

    provisioned.restore_token()
    assert keys.master_key.unwrap(wrapped, context=CONTEXT) == b"k" * 32


def test_doctor_reports_the_key_backend(provisioned: SoftHsm, tmp_path: Path) -> None:
    files = key_backend_findings(Settings(data_dir=tmp_path / "data"))
    assert files == [("ok", files[0][1])] and "signing key in file" in files[0][1]
    settings = Settings(data_dir=tmp_path / "data", audit={"keys": provisioned.settings()})
    findings = key_backend_findings(settings)
    assert [level for level, _ in findings] == ["ok", "ok", "warn"]  # SoftHSM2: software
    assert "sensitive and never extractable" in findings[0][1]
    broken = Settings(
        data_dir=tmp_path / "data", audit={"keys": provisioned.settings(token_label="gone")}
    )
    assert key_backend_findings(broken)[0][0] == "fail"


def test_settings_need_the_token_and_one_master_key() -> None:
    with pytest.raises(ValueError, match="module, token_label and pin_file"):
        Settings(audit={"keys": {"backend": "pkcs11"}})
    with pytest.raises(ValueError, match="Vault and the HSM"):
        Settings(audit={
            "key_provider": "vault", "vault_url": "https://vault.internal", "vault_token": "t",
            "keys": {"backend": "pkcs11", "pkcs11": {
                "module": "/m.so", "token_label": "t", "pin_file": "/p"}},
        })  # fmt: skip


def test_an_ed25519_key_in_memory_is_still_a_signing_key() -> None:
    signer = NoteSigner(ORIGIN, Ed25519PrivateKey.generate())
    assert NoteSigner.from_signer_key(signer.signer_key()).public_key == signer.public_key


def test_cli_imports_the_key_files_then_reports(hsm: SoftHsm, tmp_path: Path) -> None:
    data = tmp_path / "data"
    token = hsm.settings()["pkcs11"]
    config = tmp_path / "appliance.yaml"
    config.write_text(
        yaml.safe_dump({"data_dir": str(data), "audit": {"keys": {"pkcs11": token}}}),
        encoding="utf-8",
    )
    settings = Settings(data_dir=data)
    audit_key_provider(settings)  # today's key files, made on first use
    file_verifier = audit_signer(settings).verifier().verifier_key()
    runner = CliRunner()

    done = runner.invoke(
        app, ["audit", "keys", "init-hsm", "--import-files", "--config", str(config)]
    )

    assert done.exit_code == 0, done.output
    assert "imported master key" in done.output and "imported signing key" in done.output
    assert file_verifier in done.output.splitlines()
    assert "still on disk" in done.output and "audit.keys.backend: pkcs11" in done.output
    status = runner.invoke(app, ["audit", "keys", "status", "--config", str(config)])
    assert status.exit_code == 0 and "signing key in file" in status.output
    config.write_text(
        yaml.safe_dump({"data_dir": str(data), "audit": {"keys": hsm.settings()}}),
        encoding="utf-8",
    )
    status = runner.invoke(app, ["audit", "keys", "status", "--config", str(config)])
    assert status.exit_code == 0, status.output
    assert "imported" in status.output and file_verifier in status.output.splitlines()
