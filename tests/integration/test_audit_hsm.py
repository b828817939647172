"""A full run with the audit keys in a SoftHSM2 token: `appliance audit keys init-hsm`
provisions it, the gateway seals and signs through it, the CLI verifies, reveals,
shreds and exports with it, the standalone verifier accepts the export under the
public key read from the token, and a token that vanishes mid-traffic gives 503."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from appliance.audit.hsm_admin import provision
from appliance.audit.store import SqlAuditStore
from appliance.config import Settings
from appliance.db import create_db_engine, upgrade_database
from appliance.errors import ConfigurationError
from appliance.gateway import create_app
from appliance.identity.apikeys import ApiKeyService
from appliance.keys.deployment import DeploymentSecrets
from appliance.settings.audit import AuditSettings
from tests.integration.conftest import PEPPER, GatewayHarness, make_settings
from tests.support.fake_vllm import SECRET, FakeState
from tests.support.requests import CHAT, auth, chat_body
from tests.support.softhsm import SoftHsm, new_softhsm


@pytest.fixture
def hsm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SoftHsm:
    return new_softhsm(tmp_path, monkeypatch)


@pytest.fixture
def config(tmp_path: Path, hsm: SoftHsm) -> Path:
    path = tmp_path / "appliance.yaml"
    path.write_text(yaml.safe_dump({
        "data_dir": str(tmp_path / "data"),
        "database": {"url": f"sqlite:///{tmp_path / 'gateway.db'}"},
        "audit": {"keys": hsm.settings()},
    }), encoding="utf-8")  # fmt: skip
    return path


def cli(hsm: SoftHsm, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI in its own process (its own login to the token)."""
    env = {k: v for k, v in hsm.env().items() if not k.startswith("APPLIANCE_")}
    return subprocess.run(
        [sys.executable, "-m", "appliance.cli", *args, "--config", str(config)],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip


@pytest.fixture
def verifier_key(hsm: SoftHsm, config: Path) -> str:
    done = cli(hsm, config, "audit", "keys", "init-hsm")
    assert done.returncode == 0, done.stderr
    assert "generated signing key" in done.stdout and "generated master key" in done.stdout
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture
def harness(
    tmp_path: Path, fake_vllm: tuple[str, FakeState], hsm: SoftHsm, verifier_key: str
) -> GatewayHarness:
    url, state = fake_vllm
    settings = make_settings(tmp_path, url)
    settings.audit = AuditSettings.model_validate({"keys": hsm.settings()})
    database = create_db_engine(settings.database_url)
    upgrade_database(database)
    keys = ApiKeyService(database, PEPPER)
    harness = GatewayHarness(
        settings=settings,
        secrets=DeploymentSecrets(engine_api_key=SECRET, api_key_pepper=PEPPER),
        fake=state, keys=keys, store=SqlAuditStore(database), user_key="",
    )  # fmt: skip
    harness.user_key = harness.key()
    return harness


@pytest.fixture
def client(harness: GatewayHarness) -> Iterator[TestClient]:
    app = create_app(harness.settings, secrets=harness.secrets)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def run_verifier(clean_python: tuple[Path, Path], bundle: Path, key: str) -> str:
    python, site = clean_python
    workdir = bundle.parent / "unpacked"
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(workdir)
    done = subprocess.run(
        [str(python), "verify_bundle.py", str(bundle), "--key", key],
        cwd=workdir, capture_output=True, text=True, env={"PYTHONPATH": str(site)},
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_full_run_with_the_keys_in_the_token(
    client: TestClient,
    harness: GatewayHarness,
    hsm: SoftHsm,
    config: Path,
    verifier_key: str,
    clean_python: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    bob = harness.key()
    answered = client.post(CHAT, json=chat_body(), headers=auth(harness.user_key))
    assert answered.status_code == 200
    with client.stream("POST", CHAT, json=chat_body(stream=True), headers=auth(bob)) as streamed:
        assert streamed.status_code == 200
        b"".join(streamed.iter_bytes())
    request, _done = harness.records(answered.headers["x-request-id"])

    # The CLI, in its own process and login: checkpoint, verify, reveal, shred.
    assert cli(hsm, config, "audit", "checkpoint").returncode == 0
    checked = cli(hsm, config, "audit", "verify", "--key", verifier_key)
    assert checked.returncode == 0, checked.stderr
    assert cli(hsm, config, "audit", "public-key").stdout.strip() == verifier_key
    shown = cli(hsm, config, "audit", "show", request.record_id, "--reason", "case 1")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["content"] == {"messages": [{"role": "user", "content": "hi"}]}
    shred = cli(hsm, config, "audit", "shred", "--subject", request.subject, "--reason", "erase")
    assert shred.returncode == 0, shred.stderr
    gone = cli(hsm, config, "audit", "show", request.record_id, "--reason", "check")
    assert json.loads(gone.stdout)["content_status"] == "shredded"

    # An evidence bundle verifies, standalone, under the key exported from the token.
    bundle = tmp_path / "bundle.zip"
    assert cli(hsm, config, "audit", "export", "--out", str(bundle)).returncode == 0
    assert "OK:" in run_verifier(clean_python, bundle, verifier_key)
    doctor = cli(hsm, config, "audit", "keys", "status")
    assert doctor.returncode == 0 and "never extractable" in doctor.stdout
    # The key history, for auditors and witnesses: one key, the token's, from size 0.
    auditor = auth(harness.key(roles=["appliance-auditor"]))
    keys = client.get("/audit/keys", headers=auditor)
    assert keys.status_code == 200, keys.text
    assert [(k["verifier_key"], k["from_tree_size"]) for k in keys.json()["keys"]] == [
        (verifier_key, 0)
    ]
    assert client.get("/audit/keys", headers=auth(bob)).status_code == 403

    # The token goes away mid-traffic: requests that need it are refused (503), none
    # served unaudited; it comes back, and so does service.
    hsm.remove_token()
    newcomer = harness.key()  # a new subject: its key must be wrapped in the token
    refused = client.post(CHAT, json=chat_body(), headers=auth(newcomer))
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "audit_unavailable"
    hsm.restore_token()
    assert client.post(CHAT, json=chat_body(), headers=auth(newcomer)).status_code == 200
    assert cli(hsm, config, "audit", "checkpoint").returncode == 0
    assert cli(hsm, config, "audit", "verify", "--key", verifier_key).returncode == 0


def test_the_gateway_refuses_to_start_without_its_token(
    harness: GatewayHarness, hsm: SoftHsm, config: Path
) -> None:
    hsm.pin_file.write_text("00000000\n", encoding="ascii")
    with pytest.raises(ConfigurationError, match="refused the PIN"):
        with TestClient(create_app(harness.settings, secrets=harness.secrets)):
            pass
    missing = Settings.model_validate({
        **harness.settings.model_dump(exclude={"audit"}),
        "audit": {"keys": hsm.settings(token_label="not-there")},
    })  # fmt: skip
    with pytest.raises(ConfigurationError, match="no PKCS#11 token 'not-there'"):
        with TestClient(create_app(missing, secrets=harness.secrets)):
            pass
    module = Settings.model_validate({
        **harness.settings.model_dump(exclude={"audit"}),
        "audit": {"keys": hsm.settings(module=str(hsm.module.with_name("libnothere.so")))},
    })  # fmt: skip
    with pytest.raises(ConfigurationError, match=r"PKCS#11 module not found: .*libnothere\.so"):
        with TestClient(create_app(module, secrets=harness.secrets)):
            pass
    # The CLI says it in one line, naming the cause.
    done = cli(hsm, config, "audit", "public-key")
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and "refused the PIN" in done.stderr


def test_the_gateway_refuses_a_token_holding_other_keys(
    client: TestClient, harness: GatewayHarness, hsm: SoftHsm, config: Path
) -> None:
    assert client.post(CHAT, json=chat_body(), headers=auth(harness.user_key)).status_code == 200
    assert cli(hsm, config, "audit", "checkpoint").returncode == 0
    # Other keys on the same token, e.g. a wrong label after a re-provisioning.
    labels = {"master_key_label": "other-master", "signing_key_label": "other-signing"}
    provision(hsm.config(**labels), harness.settings.audit.origin)
    other = Settings.model_validate({
        **harness.settings.model_dump(exclude={"audit"}),
        "audit": {"keys": hsm.settings(**labels)},
    })  # fmt: skip
    with pytest.raises(ConfigurationError, match="does not open the subject keys"):
        with TestClient(create_app(other, secrets=harness.secrets)):
            pass
