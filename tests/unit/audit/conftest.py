from __future__ import annotations

import os

import pytest
from sqlalchemy import Engine

from appliance.audit.checkpoint import NoteSigner
from appliance.audit.log import AuditLog
from tests.support.audit import ORIGIN, build_log


@pytest.fixture
def signer() -> NoteSigner:
    return NoteSigner.generate(ORIGIN)


@pytest.fixture
def master_key() -> bytes:
    return os.urandom(32)


@pytest.fixture
def log(migrated_engine: Engine, signer: NoteSigner, master_key: bytes) -> AuditLog:
    return build_log(migrated_engine, signer=signer, master_key=master_key)
