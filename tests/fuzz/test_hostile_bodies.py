"""Hostile request bodies (issue 19): Hypothesis puts a hostile value into a random
field of an otherwise valid chat request and sends the raw bytes to a live gateway
with token quotas. Hostile values are those that once escaped as 500s or failed whole
audit batches: lone surrogates (in values and in keys), NUL and non-characters,
integers past int64 and past a double's range, NaN and Infinity literals, nesting
past the interpreter's recursion limit, long arrays. The property: never a 5xx, and
every answer has its audit record."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.audit.store import SqlAuditStore
from appliance.db import create_db_engine, upgrade_database
from appliance.gateway import create_app
from appliance.gateway.services import utc_now
from appliance.identity.apikeys import ApiKeyService
from appliance.keys.deployment import DeploymentSecrets
from appliance.settings.limits import LimitsSettings
from tests.integration.conftest import PEPPER, make_settings
from tests.support.fake_vllm import SECRET
from tests.support.requests import CHAT
from tests.support.servers import ServerThread

LIVE: dict[str, object] = {}


@pytest.fixture(scope="module")
def live_gateway(
    tmp_path_factory: pytest.TempPathFactory, fake_vllm: tuple[str, object]
) -> Iterator[None]:
    upstream, _state = fake_vllm
    tmp: Path = tmp_path_factory.mktemp("hostile")
    gateway_settings = make_settings(tmp, upstream, max_body_bytes=262_144)
    gateway_settings = gateway_settings.model_copy(
        update={"limits": LimitsSettings(roles={"appliance-user": {"tpm": 10_000_000}})}
    )
    database = create_db_engine(gateway_settings.database_url)
    upgrade_database(database)
    key = (
        ApiKeyService(database, PEPPER)
        .create(name="fuzz", owner="fuzzer", roles=["appliance-user"], models=None, now=utc_now())
        .secret
    )
    secrets = DeploymentSecrets(engine_api_key=SECRET, api_key_pepper=PEPPER)
    with ServerThread(create_app(gateway_settings, secrets=secrets)) as server:
        LIVE.update(url=server.url, key=key, store=SqlAuditStore(database))
        yield
    database.dispose()


# Raw JSON fragments: json.dumps cannot write some of them (lone surrogates come out
# escaped, which is what a client sends), and some are not JSON Python would write.
_hostile_text = st.text(
    alphabet=st.one_of(
        st.characters(min_codepoint=0, max_codepoint=0x10FFFF),
        st.sampled_from(["\x00", "\ud800", "\udfff", "\ufffe", "\uffff", "\ufdd0"]),
    ),
    max_size=20,
).map(lambda s: json.dumps(s, ensure_ascii=True))
_hostile_number = st.one_of(
    st.integers(min_value=2**53 - 2, max_value=2**70).map(str),
    st.integers(min_value=-(2**70), max_value=-(2**63) + 2).map(str),
    st.integers(min_value=300, max_value=4000).map(lambda n: "1" + "0" * n),
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e400", "1e-400"]),
)
_hostile_nesting = st.integers(min_value=60, max_value=6000).map(lambda n: "[" * n + "]" * n)
_hostile_array = st.integers(min_value=1, max_value=150_000).map(
    lambda n: "[" + ",".join(["0"] * n) + "]"
)
_hostile = st.one_of(_hostile_text, _hostile_number, _hostile_nesting, _hostile_array)
_fields = st.sampled_from(
    [
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "seed",
        "n",
        "presence_penalty",
        "logit_bias",
        "stop",
        "model",
        "user",
        "x_extra",
    ]
)


def _body(field: str, value: str, where: str, key_text: str) -> bytes:
    content = value if where == "content" else '"hi"'
    message = f'{{"role":"user","content":{content},{key_text}:1}}'
    fields = {"model": '"fake-model"', "messages": f"[{message}]"}
    if where == "field":
        fields[field] = value
    return ("{" + ",".join(f'"{k}":{v}' for k, v in fields.items()) + "}").encode()


@settings(
    max_examples=120, deadline=None, derandomize=True, database=None,
    suppress_health_check=list(HealthCheck),
)  # fmt: skip
@given(
    field=_fields,
    value=_hostile,
    where=st.sampled_from(["field", "content"]),
    key_text=_hostile_text,
)
def test_hostile_values_never_earn_a_5xx_and_are_always_audited(
    live_gateway: None, field: str, value: str, where: str, key_text: str
) -> None:
    body = _body(field, value, where, key_text)
    headers = {"Authorization": f"Bearer {LIVE['key']}", "Content-Type": "application/json"}
    response = httpx.post(f"{LIVE['url']}{CHAT}", content=body, headers=headers, timeout=30)
    assert response.status_code < 500, (response.status_code, response.text[:300], body[:300])
    store: SqlAuditStore = LIVE["store"]  # type: ignore[assignment]
    assert store.by_request(response.headers["x-request-id"]), "unaudited"
