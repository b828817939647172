"""The checkpoint key as ECDSA P-256 in a SoftHSM2 token (audit.keys.pkcs11.algorithm
ecdsa-p256, what ``auto`` picks on a token without CKM_EDDSA): made there, signing
there, and its checkpoints verify under the key exported from the token, with the
appliance's verifier and the standalone one."""

from __future__ import annotations

from pathlib import Path

import pkcs11
import pytest
from sqlalchemy import Engine

from appliance.audit import bundle_verifier
from appliance.audit.checkpoint import NoteSigner, NoteVerifier
from appliance.audit.hsm import open_hsm_keys
from appliance.audit.hsm_admin import provision
from appliance.audit.hsm_session import choose_algorithm
from appliance.audit.verify import verify_log
from appliance.audit.wiring import audit_verifier, open_audit_log
from appliance.config import Settings
from appliance.errors import ConfigurationError
from tests.support.audit import ORIGIN, content_record
from tests.support.softhsm import SoftHsm, new_softhsm


@pytest.fixture
def hsm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SoftHsm:
    return new_softhsm(tmp_path, monkeypatch)


def test_auto_takes_ed25519_only_where_the_token_offers_eddsa() -> None:
    eddsa, ecdsa = int(pkcs11.Mechanism.EDDSA), int(pkcs11.Mechanism.ECDSA)
    assert choose_algorithm("auto", frozenset({eddsa, ecdsa})) == "ed25519"
    assert choose_algorithm("auto", frozenset({ecdsa})) == "ecdsa-p256"
    assert choose_algorithm("ecdsa-p256", frozenset({eddsa, ecdsa})) == "ecdsa-p256"


def test_a_full_run_with_an_ecdsa_key_in_the_token(
    hsm: SoftHsm, tmp_path: Path, database_url: str, migrated_engine: Engine
) -> None:
    config = hsm.config(algorithm="ecdsa-p256")
    report = provision(config, ORIGIN)
    assert report.signing.kind == "ECDSA P-256 signing key" and report.signing.protected
    exported = NoteVerifier.from_verifier_key(report.verifier_key)
    assert exported.algorithm == "ECDSA secp256r1"
    settings = Settings(
        data_dir=tmp_path / "data",
        database={"url": database_url},
        audit={"origin": ORIGIN, "keys": hsm.settings(algorithm="ecdsa-p256")},
    )
    log = open_audit_log(settings, migrated_engine)
    log.append_batch([content_record(i) for i in range(5)])
    first = log.checkpoint()
    log.append(content_record(9, subject="apikey:bob"))
    second = log.checkpoint()
    assert first is not None and second is not None

    assert audit_verifier(settings).verifier_key() == report.verifier_key
    assert verify_log(log.store, exported, origin=ORIGIN).records == 6
    key = bundle_verifier.parse_key(report.verifier_key)
    assert bundle_verifier.open_checkpoint(second.note, key)[1] == 6
    # The log reopens (another process) and goes on under the same key.
    again = open_audit_log(settings, migrated_engine)
    again.append(content_record(10))
    again.checkpoint()
    assert verify_log(again.store, exported, origin=ORIGIN).uncovered == 0


def test_a_key_of_the_other_type_is_named(hsm: SoftHsm) -> None:
    provision(hsm.config(algorithm="ecdsa-p256"), ORIGIN)
    with pytest.raises(
        ConfigurationError, match=r"is ecdsa-p256, but audit\.keys\.pkcs11\.algorithm is ed25519"
    ):
        open_hsm_keys(hsm.config(algorithm="ed25519"))
    keys = open_hsm_keys(hsm.config())  # auto: whichever the token holds
    try:
        assert keys.signing_key.algorithm == "ecdsa-p256"
    finally:
        keys.close()
    # An Ed25519 file key cannot be imported as an ECDSA one: the message says what to do.
    other = hsm.config(algorithm="ecdsa-p256", signing_key_label="imported")
    with pytest.raises(ConfigurationError, match="keys migrate --to pkcs11"):
        provision(other, ORIGIN, signing_key=NoteSigner.generate(ORIGIN))
