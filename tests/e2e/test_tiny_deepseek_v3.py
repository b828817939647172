"""The DeepSeek-V3 code path on CPU: the tiny seeded DeepseekV3ForCausalLM (MLA + MoE
with a shared expert + noaux_tc routing) served by vLLM-CPU from planner plans with
TP=1 and TP=2; both must produce the same greedy token ids.

The TP=1 engine also runs DeepSeek-R1's reasoning parser (``--reasoning-parser
deepseek_r1``), which needs ``<think>``/``</think>`` in the tokenizer: it serves a copy
of the tiny model whose tokenizer has them as added tokens (ids past the model's
vocabulary, so never generated and absent from the completion prompts). The parser
takes all output before ``</think>`` for reasoning, so the random model's whole chat
answer comes back as vLLM 0.32's ``reasoning``; a gateway in front of that engine must
hand it to the client and seal it in the completion record.

Expert parallelism does not run on vLLM's CPU build (ARCHITECTURE.md), so EP plans are
checked by their argv in tests/unit/planner and exercised only on GPUs.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from appliance.audit.access import Actor, reveal
from appliance.audit.store import SqlAuditStore
from appliance.audit.wiring import open_audit_log
from appliance.config import Settings
from appliance.db import create_db_engine, upgrade_database
from appliance.engine import EngineSupervisor
from appliance.engine.plan_launch import launch_spec_from_plan
from appliance.gateway import create_app
from appliance.gateway.services import utc_now
from appliance.identity.apikeys import ApiKeyService
from appliance.keys.deployment import DeploymentSecrets
from appliance.modelstore import prepare_dev_model, verify_manifest
from appliance.modelstore.manifest import MANIFEST_NAME, write_manifest
from appliance.modelstore.tinydeepseek import make_tiny_deepseek_v3
from appliance.planner import PlanRequest, find_profile, gpu_type, make_plan
from tests.support.servers import free_port

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
DEV_MODEL_DIR = REPO / ".data" / "models" / "smollm2-135m-instruct"
TINY_DIR = REPO / ".data" / "models" / "tiny-deepseek-v3"
API_KEY = "tiny-e2e-secret"
PROMPTS = ["The capital of France is", "def fibonacci(n):"]
MAX_TOKENS = 16
STARTUP_TIMEOUT_S = 1200
REASONING_PARSER = ("--reasoning-parser", "deepseek_r1")
THINK_TOKENS = ("<think>", "</think>")
SECRETS = DeploymentSecrets(engine_api_key=API_KEY, api_key_pepper="tiny-e2e-pepper")


def _greedy_token_ids(url: str, served_name: str) -> list[list[str]]:
    out = []
    with httpx.Client(timeout=300, headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        for prompt in PROMPTS:
            response = client.post(
                f"{url}/v1/completions",
                json={
                    "model": served_name,
                    "prompt": prompt,
                    "max_tokens": MAX_TOKENS,
                    "temperature": 0,
                    "ignore_eos": True,
                    "logprobs": 1,
                    "return_tokens_as_token_ids": True,
                },
            )
            assert response.status_code == 200, response.text
            tokens = response.json()["choices"][0]["logprobs"]["tokens"]
            assert all(token.startswith("token_id:") for token in tokens), tokens
            out.append(tokens)
    return out


def _with_think_tokens(source: Path, destination: Path) -> Path:
    """A copy of the model whose tokenizer also has DeepSeek's ``<think>`` tokens."""
    shutil.copytree(source, destination)
    (destination / MANIFEST_NAME).unlink()
    tokenizer = json.loads((destination / "tokenizer.json").read_text("utf-8"))
    next_id = max(t["id"] for t in tokenizer["added_tokens"]) + 1
    next_id = max(next_id, len(tokenizer["model"]["vocab"]))
    for offset, token in enumerate(THINK_TOKENS):
        tokenizer["added_tokens"].append(
            {"id": next_id + offset, "content": token, "single_word": False, "lstrip": False,
             "rstrip": False, "normalized": False, "special": False}
        )  # fmt: skip
    (destination / "tokenizer.json").write_text(json.dumps(tokenizer), "utf-8")
    write_manifest(destination)
    return destination


def _sealed_answer(settings: Settings, request_id: str) -> tuple[dict[str, Any], Any]:
    """The completion record's clear params and its revealed sealed content."""
    database = create_db_engine(settings.database_url)
    done = SqlAuditStore(database).by_request(request_id)[-1]
    log = open_audit_log(settings, database)
    actor = Actor(subject="cli:e2e", username="e2e")
    return done.params or {}, reveal(log, done.record_id, actor=actor, reason="e2e").content


def _check_reasoning_through_gateway(url: str, served_name: str, workdir: Path) -> None:
    settings = Settings(
        data_dir=workdir / "data",
        database={"url": f"sqlite:///{workdir / 'gateway.db'}"},
        engine={"enabled": False},
        gateway={"upstreams": [{"model": served_name, "url": url}]},
    )
    database = create_db_engine(settings.database_url)
    upgrade_database(database)
    key = (
        ApiKeyService(database, SECRETS.api_key_pepper)
        .create(name="e2e", owner="tester", roles=["appliance-user"], models=None, now=utc_now())
        .secret
    )
    headers = {"Authorization": f"Bearer {key}"}
    body = {"model": served_name, "messages": [{"role": "user", "content": "Why?"}],
            "max_tokens": 8, "temperature": 0}  # fmt: skip
    with TestClient(create_app(settings, secrets=SECRETS)) as client:
        plain = client.post("/v1/chat/completions", json=body, headers=headers)
        streamed = client.post("/v1/chat/completions", json={**body, "stream": True},
                               headers=headers)  # fmt: skip
    assert plain.status_code == 200 and streamed.status_code == 200, plain.text
    message = plain.json()["choices"][0]["message"]
    thought = message.get("reasoning") or message.get("reasoning_content")
    assert thought and not message["content"]  # no </think>: all of it is reasoning
    pieces = []
    for line in streamed.text.splitlines():
        if line.startswith("data: {"):
            for choice in json.loads(line[6:])["choices"]:
                delta = choice["delta"]
                pieces.append(delta.get("reasoning") or delta.get("reasoning_content") or "")
    assert "".join(pieces) == thought  # greedy: the same reasoning, in deltas
    for response in (plain, streamed):
        params, content = _sealed_answer(settings, response.headers["x-request-id"])
        assert params["reasoning"] is True and thought not in json.dumps(params)
        assert content["reasoning"] == [thought]
        assert "".join(content["response"]) == ""


def _serve_and_generate(
    tp: int,
    tmp_path: Path,
    *,
    model_dir: Path = TINY_DIR,
    extra_args: tuple[str, ...] = (),
    while_up: Callable[[str, str], None] | None = None,
) -> tuple[list[list[str]], float]:
    profile = find_profile("tiny-deepseek-v3")
    request = PlanRequest(profile.name, "cpu", gpus_per_node=tp, max_model_len=512,
                          memory_mib=2048)  # fmt: skip
    plan = make_plan(profile, gpu_type("cpu"), request)
    assert (plan.layout.tp, plan.layout.ep, plan.dtype) == (tp, False, "float32")
    spec = launch_spec_from_plan(
        plan, role="head", model_dir=model_dir, api_key=API_KEY, port=free_port()
    )
    spec = replace(spec, extra_args=(*spec.extra_args, *extra_args))
    verify_manifest(spec.model_dir)  # the engine never serves an unverified model
    supervisor = EngineSupervisor(
        spec, log_path=tmp_path / f"engine-tp{tp}.log", base_env=dict(os.environ),
        startup_timeout_s=STARTUP_TIMEOUT_S, max_restarts=0,
    )  # fmt: skip
    started = time.monotonic()
    try:
        supervisor.start()
        start_s = time.monotonic() - started
        tokens = _greedy_token_ids(spec.url, plan.served_model_name)
        if while_up is not None:
            while_up(spec.url, plan.served_model_name)
        return tokens, start_s
    finally:
        supervisor.stop()


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="TP=2 on CPU needs two cores")
def test_tp1_and_tp2_produce_identical_greedy_tokens(tmp_path: Path) -> None:
    prepare_dev_model(DEV_MODEL_DIR)
    make_tiny_deepseek_v3(TINY_DIR, tokenizer_dir=DEV_MODEL_DIR)
    # TP=1 with the reasoning parser (its tokenizer has <think> tokens), checked through
    # a gateway while it is up; TP=2 from the model as built.
    reasoning_model = _with_think_tokens(TINY_DIR, tmp_path / "tiny-think")
    gateway_dir = tmp_path / "gateway"
    gateway_dir.mkdir()
    tp1, tp1_start = _serve_and_generate(
        1, tmp_path, model_dir=reasoning_model, extra_args=REASONING_PARSER,
        while_up=lambda url, name: _check_reasoning_through_gateway(url, name, gateway_dir),
    )  # fmt: skip
    tp2, tp2_start = _serve_and_generate(2, tmp_path)
    print(f"vLLM-CPU start: TP=1 {tp1_start:.0f}s, TP=2 {tp2_start:.0f}s")
    assert all(len(tokens) == MAX_TOKENS for tokens in tp1)
    assert tp1 == tp2
