"""The database role against a throwaway PostgreSQL cluster of this machine's Debian
PostgreSQL (``pg_createcluster`` on a free port; the server other tests use is not
touched). The cluster starts as PostgreSQL 13 did, hashing passwords with md5, with a
scram-sha-256-only ``pg_hba`` line: the owner an earlier release created cannot log in;
after the role it logs in over TLS with ``sslmode=verify-full``, a rotated password
replaces the old one, and a second run with the same password changes nothing. The
gateway role then copies the certificate the database role fetched to the gateway host
and migrates the database over ``sslmode=verify-full`` with it as sslrootcert."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy.ansible_harness import ansible_available, local_inventory, run_playbook
from tests.support.servers import free_port

pytestmark = [
    pytest.mark.skipif(not ansible_available(), reason="ansible-core not installed"),
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("pg_createcluster") is None,
        reason="needs root and Debian's postgresql-common (pg_createcluster)",
    ),
]

GATEWAY_PLAYBOOK = """\
- name: Gateway
  hosts: appliance_gateway
  gather_facts: false
  roles:
    - role: appliance_gateway
"""
PLAYBOOK = """\
- name: Database
  hosts: appliance_database
  gather_facts: true
  gather_subset: [min]
  roles:
    - role: appliance_database
"""
VERSION = "15"
OLD_PASSWORD = "first-password-0123456789"
NEW_PASSWORD = "rotated 'pass\\\\word\" $(id)"  # quotes, a backslash, shell syntax


@dataclass(frozen=True)
class Cluster:
    name: str
    port: int

    def ctl(self, action: str) -> None:
        subprocess.run(["pg_ctlcluster", VERSION, self.name, action], check=True,
                       capture_output=True, timeout=60)  # fmt: skip

    def sql(self, query: str, database: str = "postgres") -> str:
        return subprocess.run(
            ["runuser", "-u", "postgres", "--", "psql", "-p", str(self.port), "-d", database,
             "-tAc", query],
            check=True, capture_output=True, text=True, timeout=30,
        ).stdout.strip()  # fmt: skip


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    name, port = f"appl{uuid.uuid4().hex[:8]}", free_port()
    created = subprocess.run(
        ["pg_createcluster", VERSION, name, "-p", str(port),
         "-o", "password_encryption=md5",          # PostgreSQL 13's default
         "--start",
         "--", "--auth-local=peer", "--auth-host=scram-sha-256"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if created.returncode != 0:
        subprocess.run(["pg_dropcluster", "--stop", VERSION, name], capture_output=True)
        pytest.skip(f"pg_createcluster failed: {created.stderr}")
    try:
        yield Cluster(name, port)
    finally:
        subprocess.run(["pg_dropcluster", "--stop", VERSION, name], capture_output=True,
                       timeout=120)  # fmt: skip


def _run(tmp: Path, cluster: Cluster, password: str):
    inventory = local_inventory(
        tmp,
        {"appliance_database": {"db": {"ansible_host": "127.0.0.1"}}},
        # Tasks run as postgres (su from root): a Python and a temp dir it can reach.
        ansible_become_method="su",
        ansible_python_interpreter="/usr/bin/python3",
        appliance_database_install=False,
        appliance_database_manage_service=False,
        appliance_database_port=cluster.port,
        appliance_database_password=password,
        appliance_database_listen_addresses="127.0.0.1",
        appliance_database_client_networks=["127.0.0.1/32"],
        appliance_database_tls_names=["localhost", "127.0.0.1"],
        appliance_database_tls_fetch_dir=str(tmp / "fetched"),
    )
    playbook = tmp / "database.yml"
    playbook.write_text(PLAYBOOK, encoding="utf-8")
    remote_tmp = Path(tempfile.mkdtemp(prefix="appliance-db-"))  # outside root's 0700 tmp
    remote_tmp.chmod(0o1777)
    return run_playbook(playbook, inventory, env={"ANSIBLE_REMOTE_TEMP": str(remote_tmp)},
                        timeout=180)  # fmt: skip


def _login(tmp: Path, cluster: Cluster, password: str, sslmode: str = "verify-full"):
    """psql as the owner over TCP; the password through PGPASSWORD, not argv."""
    root = tmp / "fetched" / "db.crt"
    url = (f"host=localhost port={cluster.port} dbname=appliance user=appliance "
           f"sslmode={sslmode} sslrootcert={root}")  # fmt: skip
    return subprocess.run(
        ["psql", url, "-tAc", "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"],
        env={**os.environ, "PGPASSWORD": password}, capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def _stage_pg13_owner(cluster: Cluster) -> None:
    """What the previous role left on PostgreSQL 13: the owner with an md5 hash, the
    database, and a scram-only pg_hba line."""
    cluster.sql(f"CREATE ROLE appliance LOGIN PASSWORD '{OLD_PASSWORD}'")
    cluster.sql("CREATE DATABASE appliance OWNER appliance")
    assert cluster.sql("SELECT rolpassword FROM pg_authid WHERE rolname = 'appliance'").startswith(
        "md5"
    )
    hba = Path(cluster.sql("SHOW hba_file"))
    hba.write_text(hba.read_text() + "host appliance appliance 127.0.0.1/32 scram-sha-256\n")
    cluster.ctl("reload")


def test_md5_owner_logs_in_over_verified_tls_after_the_role_and_rotation_works(tmp_path, cluster):
    _stage_pg13_owner(cluster)
    before = _login(tmp_path, cluster, OLD_PASSWORD, sslmode="prefer")
    assert before.returncode != 0 and "password authentication failed" in before.stderr

    first = _run(tmp_path, cluster, OLD_PASSWORD)
    assert first.returncode == 0, first.output
    assert OLD_PASSWORD not in first.output
    cluster.ctl("restart")  # what the role's handler does (manage_service is off here)
    assert cluster.sql("SHOW password_encryption") == "scram-sha-256"
    assert cluster.sql("SHOW ssl") == "on"
    assert cluster.sql("SELECT rolpassword FROM pg_authid WHERE rolname = 'appliance'").startswith(
        "SCRAM-SHA-256$"
    )
    hba = Path(cluster.sql("SHOW hba_file")).read_text()
    assert "hostssl appliance appliance 127.0.0.1/32 scram-sha-256" in hba

    after = _login(tmp_path, cluster, OLD_PASSWORD)
    assert after.returncode == 0, after.stderr
    assert after.stdout.strip() == "t"  # the session is encrypted, the name verified

    # The same password again: nothing changes (the stored verifier already matches).
    again = _run(tmp_path, cluster, OLD_PASSWORD)
    assert again.returncode == 0, again.output
    assert "changed=0" in again.output, again.output

    # Rotation: the new password logs in, the old one no longer does.
    rotated = _run(tmp_path, cluster, NEW_PASSWORD)
    assert rotated.returncode == 0, rotated.output
    assert NEW_PASSWORD not in rotated.output
    assert _login(tmp_path, cluster, NEW_PASSWORD).returncode == 0
    old = _login(tmp_path, cluster, OLD_PASSWORD)
    assert old.returncode != 0 and "password authentication failed" in old.stderr


def _run_gateway(tmp: Path, cluster: Cluster, password: str):
    """The gateway role on host ``gw`` with the database's CA left at its default (the
    certificate the database role fetched for host ``db``)."""
    ca = tmp / "root" / "gw" / "etc" / "appliance" / "tls" / "database-ca.crt"
    inventory = local_inventory(
        tmp,
        {
            "appliance_database": {"db": {"ansible_host": "127.0.0.1"}},
            "appliance_engine": {"engine-0": {"ansible_host": "127.0.0.1"}},
            "appliance_gateway": {"gw": {}},
        },
        appliance_database_tls_fetch_dir=str(tmp / "fetched"),
        appliance_engine_api_key="engine-secret",
        appliance_engine_served_model_name="smollm2-135m-instruct",
        appliance_gateway_tls_mode="none",
        appliance_gateway_migrate=True,
        appliance_gateway_database_url=(
            f"postgresql+psycopg://appliance@localhost:{cluster.port}/appliance"
            f"?sslmode=verify-full&sslrootcert={ca}"
        ),
        appliance_gateway_database_password=password,
    )
    playbook = tmp / "gateway.yml"
    playbook.write_text(GATEWAY_PLAYBOOK, encoding="utf-8")
    return run_playbook(playbook, inventory, timeout=180), ca


def test_the_gateway_migrates_over_verified_tls_with_the_fetched_ca(tmp_path, cluster):
    first = _run(tmp_path, cluster, OLD_PASSWORD)
    assert first.returncode == 0, first.output
    cluster.ctl("restart")
    run, ca = _run_gateway(tmp_path, cluster, OLD_PASSWORD)
    assert run.returncode == 0, run.output
    assert ca.read_bytes() == (tmp_path / "fetched" / "db.crt").read_bytes()
    revision = cluster.sql("SELECT version_num FROM alembic_version", database="appliance")
    assert revision, "the gateway role did not migrate the database"


def test_a_missing_database_ca_names_the_fix(tmp_path, cluster):
    # The database role never ran with a fetch directory: nothing to copy.
    run, _ca = _run_gateway(tmp_path, cluster, OLD_PASSWORD)
    assert run.returncode != 0
    assert "appliance_database_tls_fetch_dir" in run.output
