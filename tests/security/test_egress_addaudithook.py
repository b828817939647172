"""With an external provider declared, a real gateway process under an audit hook
connects to that provider's address and port and to nothing else outside the engines
(issue #17). The provider is a recording fake on 127.0.0.2, the engines' fake on
127.0.0.1, so the two are told apart; ``test_gateway_process.py`` proves the other half
(no provider: loopback only, no provider address ever)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml

from appliance.config import load_settings
from appliance.db import create_db_engine, upgrade_database
from appliance.gateway.services import utc_now
from appliance.identity.apikeys import ApiKeyService
from appliance.keys.deployment import deployment_secrets
from tests.support.fake_provider import KEY, FakeProvider
from tests.support.fake_vllm import SECRET
from tests.support.processes import appliance_serve
from tests.support.requests import CHAT, auth, chat_body
from tests.support.servers import free_port

EMAIL = "jane.doe@example.org"


@pytest.fixture(scope="module")
def run(
    tmp_path_factory: pytest.TempPathFactory, fake_vllm: tuple[str, object]
) -> Iterator[tuple[list[dict[str, Any]], FakeProvider]]:
    upstream, _state = fake_vllm
    tmp = tmp_path_factory.mktemp("egress-hook")
    with FakeProvider(tmp / "tls", host="127.0.0.2") as provider:
        key_file = tmp / "frontier.key"
        key_file.write_text(KEY + "\n")
        port = free_port()
        config = tmp / "appliance.yaml"
        config.write_text(yaml.safe_dump({
            "data_dir": str(tmp / "data"),
            "database": {"url": f"sqlite:///{tmp / 'gateway.db'}"},
            "engine": {"enabled": False, "api_key": SECRET},
            "gateway": {"port": port, "upstreams": [{"model": "fake-model", "url": upstream}]},
            "classification": {"default": "public"},
            "external_providers": [{
                "name": "frontier", "base_url": provider.base_url,
                "credential": {"secret_file": str(key_file)}, "ca_file": str(provider.ca_file),
                "max_classification": "public", "teams": ["research"],
                "models": ["gpt-echo@frontier"], "price_input_per_million": "1",
                "price_output_per_million": "1", "monthly_budget": {"research": "10"},
                "egress": {"cidrs": ["127.0.0.2/32"]},
            }],
        }))  # fmt: skip
        settings = load_settings(config)
        engine = create_db_engine(settings.database_url)
        upgrade_database(engine)
        pepper = deployment_secrets(settings).api_key_pepper
        key = ApiKeyService(engine, pepper).create(
            name="sec", owner="tester", roles=["appliance-user"], models=None, now=utc_now(),
            team="research",
        ).secret  # fmt: skip
        engine.dispose()
        connects = tmp / "connects.jsonl"
        with appliance_serve(config, port, tmp / "gateway.log", connects=connects) as url:
            with httpx.Client(base_url=url, timeout=10) as client:
                good = auth(key)
                body = chat_body("gpt-echo@frontier")
                assert client.post(CHAT, json=body, headers=good).status_code == 200
                body = {**chat_body("gpt-echo@frontier"),
                        "messages": [{"role": "user", "content": f"mail {EMAIL}"}]}  # fmt: skip
                assert client.post(CHAT, json=body, headers=good).status_code == 200
                assert client.post(CHAT, json=chat_body(), headers=good).status_code == 200
        lines = [json.loads(line) for line in connects.read_text().splitlines()]
        yield lines, provider


def test_connections_go_to_the_engines_and_the_declared_provider_only(run) -> None:  # type: ignore[no-untyped-def]
    lines, provider = run
    connects = [e for e in lines if "host" in e and e["host"] and not e["host"].startswith("/")]
    outside_engines = {(e["host"], e["port"]) for e in connects if e["host"] != "127.0.0.1"}
    # The provider was reached (the hook sees its connections) and nothing else was.
    assert outside_engines == {(provider.host, provider.port)}
    names = {e["getaddrinfo"] for e in lines if "getaddrinfo" in e}
    assert names <= {None, "localhost", "127.0.0.1", provider.host}, names
    # Only the two provider calls reached it; the in-house one did not.
    assert len(provider.state.received) == 2
    # Above the public ceiling, the e-mail address left as a placeholder only.
    assert EMAIL.encode() not in provider.state.all_bytes()
