"""The real audit log with its keys in a SoftHSM2 token (audit.keys.backend pkcs11):
sealing, checkpoints, verify, reveal and crypto-shredding work as with key files; a
log started with key files moves into the token by import; a wrong or vanished token
stops the log instead of letting it write unsealed or unsigned."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from appliance.audit.access import Actor, reveal, shred_subject
from appliance.audit.hsm_admin import file_keys, provision
from appliance.audit.verify import verify_log
from appliance.audit.wiring import audit_verifier, open_audit_log
from appliance.config import Settings
from appliance.db import create_db_engine, upgrade_database
from appliance.db.tables import audit_log, audit_subject_keys
from appliance.errors import ConfigurationError, VerificationError
from tests.support.audit import ORIGIN, content_record
from tests.support.softhsm import SoftHsm, new_softhsm

AUDITOR = Actor(subject="cli:carol", username="carol")


@pytest.fixture
def hsm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SoftHsm:
    return new_softhsm(tmp_path, monkeypatch)


def settings_for(
    tmp_path: Path, database_url: str, hsm: SoftHsm | None = None, **labels: str
) -> Settings:
    audit: dict[str, object] = {"origin": ORIGIN, "checkpoint_interval_s": 3600}
    if hsm is not None:
        audit["keys"] = hsm.settings(**labels)
    return Settings(data_dir=tmp_path / "data", database={"url": database_url}, audit=audit)


def migrated(settings: Settings) -> Engine:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_db_engine(settings.database_url)
    upgrade_database(engine)
    return engine


def count(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(audit_log)).scalar_one())


def test_a_full_run_with_keys_in_the_token(
    hsm: SoftHsm, tmp_path: Path, database_url: str, migrated_engine: Engine
) -> None:
    provision(hsm.config(), ORIGIN)
    settings = settings_for(tmp_path, database_url, hsm)
    log = open_audit_log(settings, migrated_engine)
    alice = [content_record(i) for i in range(3)]
    bob = content_record(3, subject="apikey:bob")
    log.append_batch([*alice, bob])
    log.checkpoint()

    # Checkpoints verify with the public key read from the token.
    verifier = audit_verifier(settings)
    assert verify_log(log.store, verifier, origin=ORIGIN).records == 4
    shown = reveal(log, alice[1].record_id, actor=AUDITOR, reason="case 7")
    assert shown.content == {"messages": [{"role": "user", "content": "question 1"}]}
    with migrated_engine.connect() as connection:
        masters = set(connection.execute(select(audit_subject_keys.c.master_key_id)).scalars())
    assert len(masters) == 1 and next(iter(masters)).startswith("pkcs11:appliance-audit-master")

    # Crypto-shredding: alice's key is destroyed, bob's content and every proof stay.
    assert shred_subject(log, "apikey:alice", actor=AUDITOR, reason="GDPR art. 17") == 1
    assert reveal(log, alice[0].record_id, actor=AUDITOR, reason="check").status == "shredded"
    assert reveal(log, bob.record_id, actor=AUDITOR, reason="check").status == "present"
    later = content_record(10)
    log.append(later)
    assert reveal(log, later.record_id, actor=AUDITOR, reason="new key").status == "present"
    log.checkpoint()
    report = verify_log(log.store, verifier, origin=ORIGIN)
    assert report.uncovered == 0 and report.records == count(migrated_engine)
    # A second process (the CLI beside the gateway) opens the same log and token.
    other = open_audit_log(settings, migrated_engine)
    assert reveal(other, later.record_id, actor=AUDITOR, reason="cli").status == "present"


def test_no_key_byte_reaches_the_data_directory(hsm: SoftHsm, tmp_path: Path) -> None:
    # Known key bytes, made outside the data directory and imported, so the scan below
    # knows what to look for.
    offline = Settings(data_dir=tmp_path / "offline", audit={"origin": ORIGIN})
    open_audit_log(offline, migrated(offline)).checkpoint()  # creates the file keys
    master, signer = file_keys(offline)
    provision(hsm.config(), ORIGIN, master_key=master, signing_key=signer)
    data = tmp_path / "data"
    settings = Settings(
        data_dir=data,
        database={"url": f"sqlite:///{data / 'appliance.db'}"},
        audit={"origin": ORIGIN, "keys": hsm.settings()},
    )
    log = open_audit_log(settings, migrated(settings))
    log.append_batch([content_record(i, subject=f"apikey:user{i}") for i in range(20)])
    log.checkpoint()
    shred_subject(log, "apikey:user3", actor=AUDITOR, reason="erasure")
    log.store.engine.dispose()

    seed = signer.private_key.private_bytes_raw()  # type: ignore[union-attr]
    needles = [master, seed, base64.b64encode(master), base64.b64encode(b"\x01" + seed),
               signer.signer_key().encode()]  # fmt: skip
    scanned = [path for path in data.rglob("*") if path.is_file()]
    assert any(path.name == "appliance.db" for path in scanned)
    for path in scanned:
        content = path.read_bytes()
        assert not any(needle in content for needle in needles), path
    assert not (data / "secrets" / "audit_master_key").exists()
    assert not (data / "secrets" / "audit_signing_key").exists()


def test_a_log_kept_with_key_files_moves_into_the_token(
    hsm: SoftHsm, tmp_path: Path, database_url: str, migrated_engine: Engine
) -> None:
    with_files = settings_for(tmp_path, database_url)
    before = open_audit_log(with_files, migrated_engine)
    old = content_record(1)
    before.append_batch([old, content_record(2, subject="apikey:bob")])
    before.checkpoint()
    verifier_key = audit_verifier(with_files).verifier_key()

    # `appliance audit keys init-hsm --import-files`, then backend pkcs11.
    master, signer = file_keys(with_files)
    report = provision(hsm.config(), ORIGIN, master_key=master, signing_key=signer)
    assert report.verifier_key == verifier_key
    in_token = settings_for(tmp_path, database_url, hsm)
    after = open_audit_log(in_token, migrated_engine)  # checks the file-signed checkpoint

    assert reveal(after, old.record_id, actor=AUDITOR, reason="migrated").status == "present"
    after.append(content_record(3))
    after.checkpoint()
    assert audit_verifier(in_token).verifier_key() == verifier_key
    assert verify_log(after.store, audit_verifier(in_token), origin=ORIGIN).uncovered == 0


def test_a_token_with_other_keys_keeps_the_log_closed(
    hsm: SoftHsm, tmp_path: Path, database_url: str, migrated_engine: Engine
) -> None:
    with_files = settings_for(tmp_path, database_url)
    log = open_audit_log(with_files, migrated_engine)
    log.append(content_record(1))
    log.checkpoint()
    provision(hsm.config(), ORIGIN)  # fresh keys, not the log's
    in_token = settings_for(tmp_path, database_url, hsm)

    with pytest.raises(ConfigurationError, match="does not open the subject keys"):
        open_audit_log(in_token, migrated_engine)
    # The master key imported, but a different signing key: the signed checkpoint fails.
    labels = {"master_key_label": "imported-master", "signing_key_label": "imported-signing"}
    master, _signer = file_keys(with_files)
    provision(hsm.config(**labels), ORIGIN, master_key=master)
    other = settings_for(tmp_path, database_url, hsm, **labels)
    with pytest.raises(VerificationError, match="no signature by key"):
        open_audit_log(other, migrated_engine)


def test_a_token_that_fails_mid_traffic_fails_closed(
    hsm: SoftHsm, tmp_path: Path, database_url: str, migrated_engine: Engine
) -> None:
    provision(hsm.config(), ORIGIN)
    settings = settings_for(tmp_path, database_url, hsm)
    log = open_audit_log(settings, migrated_engine)
    log.append(content_record(1))
    stored = count(migrated_engine)
    hsm.remove_token()

    with pytest.raises(OSError, match="cannot be reached to wrap a subject key"):
        log.append(content_record(2, subject="apikey:new"))  # a new subject key to wrap
    with pytest.raises(OSError, match="cannot be reached to sign"):
        log.checkpoint()
    assert count(migrated_engine) == stored  # nothing written unsealed or unsigned

    hsm.restore_token()
    log.append(content_record(3, subject="apikey:new"))
    log.checkpoint()
    assert verify_log(log.store, audit_verifier(settings), origin=ORIGIN).uncovered == 0
