"""Schemathesis against the gateway's own OpenAPI schema: every route and method,
with a valid key holding every role, a wrong key and no key. Bad input never earns a
5xx (except 503/504 from the fake engine's deliberate failure models, which are not
input errors), and every /v1 request that passed authentication has its audit record
(refusals before that are recorded too: see test_gateway_errors)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from appliance.audit.store import SqlAuditStore
from appliance.db import create_db_engine, upgrade_database
from appliance.gateway import create_app
from appliance.gateway.services import utc_now
from appliance.identity.apikeys import ApiKeyService
from appliance.keys.deployment import DeploymentSecrets
from tests.integration.conftest import PEPPER, make_settings
from tests.support.fake_vllm import SECRET
from tests.support.servers import ServerThread

ROLES = ["appliance-user", "appliance-admin", "appliance-auditor"]
LIVE: dict[str, object] = {}


@pytest.fixture(scope="module")
def api_schema(
    tmp_path_factory: pytest.TempPathFactory, fake_vllm: tuple[str, object]
) -> Iterator[schemathesis.BaseSchema]:
    upstream, _state = fake_vllm
    tmp: Path = tmp_path_factory.mktemp("schemathesis")
    gateway_settings = make_settings(tmp, upstream, max_body_bytes=65536)
    database = create_db_engine(gateway_settings.database_url)
    upgrade_database(database)
    key = (
        ApiKeyService(database, PEPPER)
        .create(name="fuzz", owner="fuzzer", roles=ROLES, models=None, now=utc_now())
        .secret
    )
    secrets = DeploymentSecrets(engine_api_key=SECRET, api_key_pepper=PEPPER)
    with ServerThread(create_app(gateway_settings, secrets=secrets)) as server:
        LIVE.update(url=server.url, key=key, store=SqlAuditStore(database))
        yield schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    database.dispose()


CREDENTIALS = {
    "valid": lambda: {"Authorization": f"Bearer {LIVE['key']}"},
    "wrong": lambda: {"Authorization": "Bearer sk-appl-not-a-real-key"},
    "none": lambda: {},
}


def _check(case) -> None:  # type: ignore[no-untyped-def]
    # the fake engine's failure models (fake-hang, fake-absent...) answer 503/504 on
    # purpose; they are not bad input
    if isinstance(case.body, dict) and str(case.body.get("model", "")).startswith("fake-"):
        case.body["model"] = "fake-model"
    for credential, headers in CREDENTIALS.items():
        response = case.call(base_url=str(LIVE["url"]), headers=headers(), timeout=10)
        if case.path == "/readyz" and response.status_code == 503:
            continue  # the harness has an engine that is down on purpose (fake-absent)
        assert response.status_code < 500, (credential, response.status_code, response.text[:500])
        if case.path.startswith("/v1/") and case.method == "POST":
            request_id = response.headers["x-request-id"]
            if isinstance(request_id, list):  # schemathesis keeps every value of a header
                request_id = request_id[0]
            store: SqlAuditStore = LIVE["store"]  # type: ignore[assignment]
            assert store.by_request(request_id), (
                f"unaudited {case.method} {case.path} ({credential})"
            )


def test_no_5xx_and_every_admitted_request_is_audited(api_schema) -> None:  # type: ignore[no-untyped-def]
    # Driven by hand (schemathesis's pytest plugin does not run under this pytest):
    # every operation, positive and negative (schema-violating) cases.
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=8, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck),
            )  # fmt: skip
            def run(case) -> None:  # type: ignore[no-untyped-def]
                _check(case)

            try:
                run()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # nothing to violate (no inputs)
