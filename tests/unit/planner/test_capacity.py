"""appliance/planner/capacity.py: layouts per vLLM's recipes, refusals, invariants."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.planner import ModelProfile, Plan, PlanRefused, PlanRequest, gpu_type, make_plan
from appliance.planner.hardware import GPU_CATALOG
from appliance.planner.layouts import candidate_layouts


def _plan(profile: ModelProfile, request: PlanRequest) -> Plan:
    return make_plan(profile, gpu_type(request.gpu), request)


def test_h200_latency_is_tp8_with_ep(deepseek_v3: ModelProfile) -> None:
    plan = _plan(deepseek_v3, PlanRequest("deepseek-v3", "h200", 8))
    assert (plan.layout.tp, plan.layout.pp, plan.layout.dp, plan.layout.ep) == (8, 1, 1, True)
    assert plan.max_model_len == deepseek_v3.context_length
    assert plan.memory.concurrency > 1
    assert any("TP8 + EP" in line for line in plan.explanation)
    assert plan.commands[0].role == "head" and len(plan.commands) == 1


def test_h200_throughput_is_dp8_with_ep(deepseek_v3: ModelProfile) -> None:
    plan = _plan(deepseek_v3, PlanRequest("deepseek-v3", "h200", 8, goal="throughput"))
    assert (plan.layout.tp, plan.layout.dp, plan.layout.ep) == (1, 8, True)
    assert plan.memory.replicas == 8
    assert plan.memory.kv_tokens_total == 8 * plan.memory.kv_tokens_per_replica


def test_one_h100_node_is_refused_with_reason_and_suggestion(deepseek_v3: ModelProfile) -> None:
    with pytest.raises(PlanRefused) as caught:
        _plan(deepseek_v3, PlanRequest("deepseek-v3", "h100", 8))
    refusal = caught.value
    assert "does not fit on 1 node x 8 x NVIDIA H100" in refusal.reason
    assert "GiB of weights" in refusal.reason
    assert any(s.startswith("2 nodes x 8 x h100 (TP8 x PP2") for s in refusal.suggestions)
    assert any("h200" in s for s in refusal.suggestions)
    assert refusal.code == "does_not_fit"


def test_two_h100_nodes_get_head_and_headless_worker(deepseek_v3: ModelProfile) -> None:
    plan = _plan(
        deepseek_v3, PlanRequest("deepseek-v3", "h100", 8, nodes=2, master_addr="10.0.0.1")
    )
    assert plan.layout.describe() == "TP8 x PP2"
    head, worker = plan.commands
    assert (head.role, head.node_rank, worker.role, worker.node_rank) == ("head", 0, "worker", 1)
    assert "--headless" in worker.extra_args and "--headless" not in head.extra_args
    for command in plan.commands:
        args = list(command.extra_args)
        assert args[args.index("--nnodes") + 1] == "2"
        assert args[args.index("--master-addr") + 1] == "10.0.0.1"
        assert args[args.index("--node-rank") + 1] == str(command.node_rank)


def test_two_h100_nodes_tp16_when_preferred_layout_is_forced(deepseek_v3: ModelProfile) -> None:
    layouts = candidate_layouts(deepseek_v3, gpu_type("h100"), 8, 2, "latency")
    assert [layout.describe() for layout in layouts] == ["TP8 x PP2", "TP16", "DP16 + EP16"]


def test_wide_ep_across_nodes_on_h200(deepseek_v3: ModelProfile) -> None:
    request = PlanRequest("deepseek-v3", "h200", 8, nodes=2, goal="throughput", fabric="rdma")
    plan = _plan(deepseek_v3, request)
    assert plan.layout.describe() == "DP16 + EP16"
    head, worker = plan.commands
    assert "--data-parallel-size-local" in head.extra_args
    assert worker.extra_args[worker.extra_args.index("--data-parallel-start-rank") + 1] == "8"
    assert "--headless" in worker.extra_args
    assert "deepep_low_latency" in head.extra_args


def test_skipped_preferred_layout_is_explained(deepseek_v3: ModelProfile) -> None:
    plan = _plan(deepseek_v3, PlanRequest("deepseek-v3", "h100", 8, nodes=2, goal="throughput"))
    assert plan.layout.describe() == "TP8 x PP2"
    assert any(line.startswith("DP16 + EP16 not chosen") for line in plan.explanation)


def test_decode_context_parallel_when_context_needs_it(deepseek_v3: ModelProfile) -> None:
    # H20 at 0.95 holds the weights but almost no KV (reference §1.2): the full
    # context fits only with DCP sharding the latent cache.
    request = PlanRequest("deepseek-v3", "h20", 8, gpu_memory_utilization=0.95, max_model_len=32768)
    plan = _plan(deepseek_v3, request)
    assert plan.layout.dcp > 1
    assert "--decode-context-parallel-size" in plan.commands[0].extra_args


def test_a100_sizes_fp8_as_bf16(deepseek_v3: ModelProfile) -> None:
    with pytest.raises(PlanRefused, match="156"):
        _plan(deepseek_v3, PlanRequest("deepseek-v3", "a100", 8))
    plan = _plan(deepseek_v3, PlanRequest("deepseek-v3", "a100", 8, nodes=4))
    assert any("no FP8 support" in line for line in plan.explanation)


def test_fp8_kv_refused_without_fp8(profiles: dict[str, ModelProfile]) -> None:
    profile = profiles["deepseek-r1-distill-qwen-7b"]
    with pytest.raises(PlanRefused, match="FP8 KV cache"):
        _plan(profile, PlanRequest(profile.name, "a100", 1, kv_cache_dtype="fp8"))


def test_context_longer_than_the_model_is_refused(deepseek_v3: ModelProfile) -> None:
    with pytest.raises(PlanRefused, match="exceeds"):
        _plan(deepseek_v3, PlanRequest("deepseek-v3", "h200", 8, max_model_len=10**6))


def test_dense_models_use_the_smallest_fitting_tp(profiles: dict[str, ModelProfile]) -> None:
    small = _plan(
        profiles["deepseek-r1-distill-qwen-7b"],
        PlanRequest("deepseek-r1-distill-qwen-7b", "h100", 8, max_model_len=32768),
    )
    assert (small.layout.tp, small.layout.dp) == (1, 8)
    big = _plan(
        profiles["deepseek-r1-distill-llama-70b"],
        PlanRequest("deepseek-r1-distill-llama-70b", "h100", 8, max_model_len=32768),
    )
    assert (big.layout.tp, big.layout.dp) == (4, 2)  # 131 GiB: TP2 is just too small
    assert not big.layout.ep  # fmt: skip


def test_r1_carries_the_reasoning_parser(profiles: dict[str, ModelProfile]) -> None:
    plan = _plan(profiles["deepseek-r1"], PlanRequest("deepseek-r1", "h200", 8))
    args = plan.commands[0].extra_args
    assert args[args.index("--reasoning-parser") + 1] == "deepseek_r1"
    assert args[args.index("--tool-call-parser") + 1] == "deepseek_v3"


def test_cpu_plans_for_the_tiny_model(profiles: dict[str, ModelProfile]) -> None:
    tiny = profiles["tiny-deepseek-v3"]
    for ranks in (1, 2):
        plan = _plan(tiny, PlanRequest(tiny.name, "cpu", ranks, max_model_len=512,
                                       memory_mib=2048))  # fmt: skip
        assert (plan.layout.tp, plan.layout.ep, plan.device) == (ranks, False, "cpu")
        assert plan.dtype == "float32"
        assert plan.cpu_kv_cache_gib == 1
        assert plan.commands[0].env["VLLM_CPU_KVCACHE_SPACE"] == "1"
        assert any("EP is exercised only on GPUs" in w or "CPU build" in w
                   for w in plan.explanation)  # fmt: skip


def test_request_validation() -> None:
    with pytest.raises(ValueError, match="nodes"):
        PlanRequest("m", "h200", 0)
    with pytest.raises(ValueError, match="utilization"):
        PlanRequest("m", "h200", 8, gpu_memory_utilization=0)
    with pytest.raises(ValueError, match="max_model_len"):
        PlanRequest("m", "h200", 8, max_model_len=1)


def test_plan_command_lookup(deepseek_v3: ModelProfile) -> None:
    plan = _plan(deepseek_v3, PlanRequest("deepseek-v3", "h200", 8))
    assert plan.command("head").node_rank == 0
    with pytest.raises(ValueError, match="no worker"):
        plan.command("worker")


_GPUS = [gpu.key for gpu in GPU_CATALOG if gpu.device == "gpu"]
_REQUESTS = st.builds(
    PlanRequest,
    model=st.just("deepseek-v3"),
    gpu=st.sampled_from(_GPUS),
    gpus_per_node=st.sampled_from([4, 8]),
    nodes=st.sampled_from([1, 2, 4]),
    goal=st.sampled_from(["latency", "throughput"]),
    max_model_len=st.sampled_from([None, 4096, 32768]),
    kv_cache_dtype=st.sampled_from(["auto", "fp8"]),
)


def _fits(profile: ModelProfile, request: PlanRequest) -> Plan | None:
    try:
        return _plan(profile, request)
    except PlanRefused:
        return None


@settings(max_examples=60, deadline=None)
@given(request=_REQUESTS, extra_mib=st.integers(min_value=1, max_value=100 * 1024))
def test_plans_are_monotonic_in_gpu_memory(
    deepseek_v3: ModelProfile, request: PlanRequest, extra_mib: int
) -> None:
    base_mib = gpu_type(request.gpu).memory_mib
    smaller = _fits(deepseek_v3, replace(request, memory_mib=base_mib))
    bigger = _fits(deepseek_v3, replace(request, memory_mib=base_mib + extra_mib))
    if smaller is None:
        return
    assert bigger is not None, "more memory per GPU must never turn a fit into a refusal"
    if bigger.layout == smaller.layout:
        assert bigger.memory.kv_tokens_total >= smaller.memory.kv_tokens_total


@settings(max_examples=60, deadline=None)
@given(request=_REQUESTS)
def test_every_plan_is_consistent(deepseek_v3: ModelProfile, request: PlanRequest) -> None:
    plan = _fits(deepseek_v3, request)
    if plan is None:
        return
    layout, memory = plan.layout, plan.memory
    assert layout.gpus == request.gpus_per_node * request.nodes
    assert memory.weight_bytes + memory.overhead_bytes + memory.kv_bytes == memory.usable_bytes
    assert memory.kv_tokens_per_replica >= plan.max_model_len
    assert len(plan.commands) == request.nodes
    assert [c.node_rank for c in plan.commands] == list(range(request.nodes))
    assert [c.role for c in plan.commands] == ["head"] + ["worker"] * (request.nodes - 1)
    assert all(("--headless" in c.extra_args) == (c.role == "worker") for c in plan.commands)
    assert all(c.env["HF_HUB_OFFLINE"] == "1" for c in plan.commands)


def test_requested_layout_is_checked_not_chosen(deepseek_v3: ModelProfile) -> None:
    from appliance.planner import Layout

    request = PlanRequest("deepseek-v3", "h100", 8, nodes=2, layout=Layout(tp=16))
    plan = _plan(deepseek_v3, request)
    assert plan.layout.describe() == "TP16"
    assert "requested" in plan.explanation[0]
    # TP16 caches all 61 layers per rank: about half of TP8 x PP2 (reference §2.4).
    default = _plan(deepseek_v3, replace(request, layout=None))
    ratio = plan.memory.kv_tokens_per_replica / default.memory.kv_tokens_per_replica
    assert ratio == pytest.approx(0.5, rel=0.05)


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({"tp": 4}, "uses 4 GPUs, the hardware has 8"),
        ({"tp": 3, "dp": 1, "pp": 1}, "uses 3 GPUs"),
        ({"tp": 8, "ep": True}, None),
    ],
)
def test_requested_layout_validation(
    profiles: dict[str, ModelProfile], layout: dict[str, object], message: str | None
) -> None:
    from appliance.planner import Layout

    profile = profiles["deepseek-r1-distill-qwen-14b"]
    request = PlanRequest(profile.name, "h100", 8, layout=Layout(**layout))  # type: ignore[arg-type]
    with pytest.raises(PlanRefused, match=message or "needs an MoE model") as caught:
        _plan(profile, request)
    assert caught.value.suggestions  # what would fit without the forced layout


def test_requested_ep_on_cpu_is_refused(profiles: dict[str, ModelProfile]) -> None:
    from appliance.planner import Layout

    tiny = profiles["tiny-deepseek-v3"]
    request = PlanRequest(tiny.name, "cpu", 2, max_model_len=512, layout=Layout(tp=2, ep=True))
    with pytest.raises(PlanRefused, match="CPU build"):
        _plan(tiny, request)
