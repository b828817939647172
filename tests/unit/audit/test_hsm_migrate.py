"""`appliance audit keys migrate --to pkcs11` against SoftHSM2, on SQLite and PostgreSQL:
subject keys re-wrapped in the token, the migration itself an audit record, a handover
checkpoint signed by both keys, and `audit verify` green across it under either key,
while the old key can no longer sign for the log."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import yaml
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from appliance.audit import bundle_verifier
from appliance.audit.access import Actor, reveal
from appliance.audit.checkpoint import Checkpoint, parse_note, sign_checkpoint
from appliance.audit.export import export_bundle
from appliance.audit.hsm_migrate import migrate_to_pkcs11
from appliance.audit.key_history import read_key_history
from appliance.audit.merkle import CompactRange
from appliance.audit.records import AuditEvent
from appliance.audit.store import SqlAuditStore, StoredCheckpoint
from appliance.audit.verify import LogVerificationError, verify_log
from appliance.audit.wiring import audit_signer, audit_verifier, open_audit_log
from appliance.cli.main import app
from appliance.config import Settings
from appliance.db.tables import audit_log, audit_subject_keys
from appliance.errors import ConfigurationError
from tests.support.audit import ORIGIN, content_record
from tests.support.softhsm import SoftHsm, new_softhsm

AUDITOR = Actor(subject="cli:carol", username="carol", auth_method="cli")


@pytest.fixture
def hsm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SoftHsm:
    return new_softhsm(tmp_path, monkeypatch)


def settings_for(tmp_path: Path, database_url: str, keys: dict[str, object]) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database={"url": database_url},
        audit={"origin": ORIGIN, "checkpoint_interval_s": 3600, "keys": keys},
    )


def file_log_with_records(settings: Settings, engine: Engine) -> list[str]:
    log = open_audit_log(settings, engine)
    records = [content_record(1), content_record(2, subject="apikey:bob"), content_record(3)]
    log.append_batch(records[:2])
    log.checkpoint()
    log.append(records[2])
    log.checkpoint()
    return [record.record_id for record in records]


def test_migrating_file_keys_to_an_ecdsa_key_keeps_every_proof(
    hsm: SoftHsm, tmp_path: Path, database_url: str, migrated_engine: Engine
) -> None:
    token = hsm.settings(algorithm="ecdsa-p256")["pkcs11"]
    with_files = settings_for(tmp_path, database_url, {"backend": "file", "pkcs11": token})
    ids = file_log_with_records(with_files, migrated_engine)
    old_signer = audit_signer(with_files)
    old_key = old_signer.verifier()

    report = migrate_to_pkcs11(with_files, migrated_engine, actor=AUDITOR)

    assert report.rewrapped == 2 and report.previous_key == old_key.verifier_key()
    assert report.key != report.previous_key and "+AjBZ" in report.key  # type 0x02, P-256
    with migrated_engine.connect() as connection:
        masters = set(connection.execute(select(audit_subject_keys.c.master_key_id)).scalars())
        migration = connection.execute(
            select(audit_log.c.idx, audit_log.c.params, audit_log.c.username).where(
                audit_log.c.event == AuditEvent.AUDIT_KEYS.value
            )
        ).one()
    assert len(masters) == 1 and next(iter(masters)).startswith("pkcs11:")
    assert migration.idx == report.record_index == 3 and migration.username == "carol"
    assert migration.params["rewrapped"] == 2 and migration.params["key"] == report.key
    store = SqlAuditStore(migrated_engine)
    handover = store.checkpoints()[-1]
    assert handover.tree_size == report.checkpoint_size == 4
    assert len(parse_note(handover.note).signatures) == 2  # the old key and the new

    # A gateway left on the key files refuses to start, naming the fix.
    with pytest.raises(ConfigurationError, match=r"set audit\.keys\.backend: pkcs11"):
        open_audit_log(with_files, migrated_engine)
    # The gateway restarts on the token and goes on.
    in_token = settings_for(tmp_path, database_url, hsm.settings(algorithm="ecdsa-p256"))
    log = open_audit_log(in_token, migrated_engine)
    log.append(content_record(4, subject="apikey:carol"))
    for record_id in ids:
        assert reveal(log, record_id, actor=AUDITOR, reason="after").status == "present"
    log.checkpoint()
    new_key = audit_verifier(in_token)
    assert new_key.verifier_key() == report.key

    # Verify is green under either key: the log publishes its key history.
    for trusted in (new_key, old_key):
        assert verify_log(log.store, trusted, origin=ORIGIN).uncovered == 0
    history = read_key_history(migrated_engine, new_key)
    assert [e.from_size for e in history.epochs] == [0, 4]
    assert [e.verifier.algorithm for e in history.epochs] == ["Ed25519", "ECDSA secp256r1"]

    # A second run finds nothing to do and records nothing.
    again = migrate_to_pkcs11(with_files, migrated_engine, actor=AUDITOR)
    assert again.record_index is None and again.kept == 3
    assert verify_log(log.store, new_key, origin=ORIGIN).records == 8  # 3 + 1 + 1 + 3 reads

    # The evidence bundle carries the key history; the standalone verifier accepts it
    # under either key, and not when the history is bent to let the old key sign more.
    bundle = tmp_path / "bundle.zip"
    export_bundle(log, bundle, since=None, until=None, actor=AUDITOR)
    for trusted in (new_key, old_key):
        checked = bundle_verifier.verify_bundle(bundle, trusted.verifier_key())
        assert checked["checkpoints"] == len(log.store.checkpoints())
    with zipfile.ZipFile(bundle) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    history_file = json.loads(files["key_history.json"])
    assert [e["from_tree_size"] for e in history_file] == [0, 4]
    history_file[1]["from_tree_size"] = 6  # the old key would then cover sizes 4 and 5
    unpacked = tmp_path / "bent"
    unpacked.mkdir()
    for name, content in {**files, "key_history.json": json.dumps(history_file).encode()}.items():
        (unpacked / name).write_bytes(content)
    with pytest.raises(bundle_verifier.BundleError, match="no handover checkpoint"):
        bundle_verifier.verify_bundle(unpacked, old_key.verifier_key())

    # The old key file, still on disk, can no longer sign for the log: a checkpoint it
    # signs for a later size is named as forged.
    log.append(content_record(5))
    tree = CompactRange()
    for _index, leaf in log.store.iter_leaf_hashes():
        tree.append(leaf)
    body = Checkpoint(ORIGIN, tree.size, tree.root())
    latest = log.store.latest_checkpoint()
    assert latest is not None
    forged = StoredCheckpoint(
        tree_size=tree.size, root_hash=tree.root(), note=sign_checkpoint(body, old_signer),
        frontier=tree.hashes, created_at=latest.created_at,
    )  # fmt: skip
    with migrated_engine.begin() as connection:
        SqlAuditStore.insert(connection, [], [], forged)
    with pytest.raises(
        LogVerificationError, match=f"checkpoint at tree size {tree.size} is forged"
    ):
        verify_log(log.store, old_key, origin=ORIGIN)


def test_keeping_the_signing_key_moves_it_without_a_new_epoch(
    hsm: SoftHsm, tmp_path: Path, database_url: str, migrated_engine: Engine
) -> None:
    with_files = settings_for(
        tmp_path, database_url, {"backend": "file", "pkcs11": hsm.settings()["pkcs11"]}
    )
    file_log_with_records(with_files, migrated_engine)
    old_key = audit_verifier(with_files).verifier_key()

    report = migrate_to_pkcs11(with_files, migrated_engine, actor=AUDITOR, keep_signing_key=True)

    assert report.key == report.previous_key == old_key and report.rewrapped == 2
    in_token = settings_for(tmp_path, database_url, hsm.settings())
    log = open_audit_log(in_token, migrated_engine)
    assert len(parse_note(log.store.checkpoints()[-1].note).signatures) == 1
    assert len(read_key_history(migrated_engine, log.verifier).epochs) == 1
    assert verify_log(log.store, log.verifier, origin=ORIGIN).records == 4


def test_a_key_outside_the_history_or_a_second_backend_is_refused(
    hsm: SoftHsm, tmp_path: Path, database_url: str, migrated_engine: Engine
) -> None:
    with_files = settings_for(
        tmp_path, database_url, {"backend": "file", "pkcs11": hsm.settings()["pkcs11"]}
    )
    file_log_with_records(with_files, migrated_engine)
    migrate_to_pkcs11(with_files, migrated_engine, actor=AUDITOR)
    stranger = audit_verifier(settings_for(tmp_path / "other", database_url, {}))
    with pytest.raises(LogVerificationError, match="is not in the log's key history"):
        verify_log(SqlAuditStore(migrated_engine), stranger, origin=ORIGIN)
    in_token = settings_for(tmp_path, database_url, hsm.settings())
    with pytest.raises(ConfigurationError, match="already pkcs11"):
        migrate_to_pkcs11(in_token, migrated_engine, actor=AUDITOR)


def test_the_cli_migrates_then_lists_the_key_history(hsm: SoftHsm, tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'cli.db'}"
    token = hsm.settings(algorithm="ecdsa-p256")["pkcs11"]
    config = tmp_path / "appliance.yaml"

    def write(keys: dict[str, object]) -> None:
        config.write_text(yaml.safe_dump({
            "data_dir": str(tmp_path / "data"), "database": {"url": database},
            "audit": {"origin": ORIGIN, "keys": keys},
        }), encoding="utf-8")  # fmt: skip

    write({"backend": "file", "pkcs11": token})
    runner = CliRunner()
    assert runner.invoke(app, ["db", "upgrade", "--config", str(config)]).exit_code == 0
    assert runner.invoke(app, ["audit", "checkpoint", "--config", str(config)]).exit_code in (0, 1)

    done = runner.invoke(
        app, ["audit", "keys", "migrate", "--to", "pkcs11", "--actor", "dana",
              "--config", str(config)],
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "recorded as audit record" in done.output and "audit.keys.backend: pkcs11" in done.output
    write({"backend": "pkcs11", "pkcs11": token})
    listed = runner.invoke(app, ["audit", "keys", "history", "--config", str(config)])
    assert listed.exit_code == 0, listed.output
    assert '"algorithm": "ECDSA secp256r1"' in listed.output and '"from_tree_size"' in listed.output
    verified = runner.invoke(app, ["audit", "verify", "--config", str(config)])
    assert verified.exit_code == 0, verified.output
    wrong = runner.invoke(
        app, ["audit", "keys", "migrate", "--to", "vault", "--config", str(config)]
    )
    assert wrong.exit_code != 0
