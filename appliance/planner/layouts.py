"""Candidate layouts in order of preference, following vLLM's recipes. Pure.

For an MoE model: TP + EP for latency and DP + EP for throughput on one node; TP x PP
(TP inside the node, PP across nodes) or TP across all GPUs for latency across nodes,
wide DP + EP for throughput (shared/reference/deepseek_vllm.md §3, §7). For a dense
model: the smallest TP that divides the heads, replicated with DP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from appliance.planner.hardware import GpuType
from appliance.planner.memory import Layout
from appliance.planner.profiles import ModelProfile

__all__ = ["Candidate", "Goal", "candidate_layouts", "candidates", "check_layout", "divisors"]

Goal = Literal["latency", "throughput"]


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


@dataclass(frozen=True)
class Candidate:
    layout: Layout
    why: str


def _dense_candidates(profile: ModelProfile, gpn: int, nodes: int) -> list[Candidate]:
    attention = profile.attention
    total = gpn * nodes
    out: list[Candidate] = []
    for size in divisors(attention.num_attention_heads):
        if size > total or total % size:
            continue
        kv = attention.num_kv_heads
        if size % kv and kv % size:
            continue
        if size <= gpn:
            if gpn % size:
                continue
            layout = Layout(tp=size, dp=total // size)
            why = f"TP{size}: the smallest tensor-parallel size whose per-GPU share fits"
        else:
            if size % gpn or nodes % (size // gpn):
                continue
            layout = Layout(tp=gpn, pp=size // gpn, dp=nodes // (size // gpn))
            why = (
                f"TP{gpn} inside each node, PP{size // gpn} across nodes: one copy needs "
                f"{size} GPUs; pipeline stages cross the slower inter-node link"
            )
        if layout.dp > 1:
            why += f"; {layout.dp} data-parallel replicas use the remaining GPUs"
        out.append(Candidate(layout, why))
    return out


def _moe_candidates(gpu: GpuType, gpn: int, nodes: int, goal: Goal) -> list[Candidate]:
    total = gpn * nodes
    if gpu.device == "cpu":
        return [
            Candidate(
                Layout(tp=gpn, pp=nodes),
                f"TP{gpn}" + (f" x PP{nodes}" if nodes > 1 else "") + ": expert parallelism "
                "does not run on vLLM's CPU build, so experts are split by TP",
            )
        ]
    if nodes == 1:
        tp_ep = Candidate(
            Layout(tp=gpn, ep=True),
            f"TP{gpn} + EP: vLLM's low-latency recipe; attention split across the "
            f"{gpn} GPUs, experts spread over them",
        )
        dp_ep = Candidate(
            Layout(tp=1, dp=gpn, ep=True),
            f"DP{gpn} + EP: vLLM's high-throughput recipe; each GPU runs its own attention "
            "and KV cache (MLA latents are not duplicated), experts are shared across all",
        )
        return [tp_ep, dp_ep] if goal == "latency" else [dp_ep, tp_ep]
    tp_pp = Candidate(
        Layout(tp=gpn, pp=nodes),
        f"TP{gpn} x PP{nodes}: TP stays inside each node's NVLink domain, pipeline "
        "stages cross nodes (vLLM's multi-node recipe); each stage caches only its layers",
    )
    tp_all = Candidate(
        Layout(tp=total),
        f"TP{total} across nodes: needs a fast inter-node fabric (InfiniBand/RoCE) and "
        "holds the full MLA cache on every rank",
    )
    wide = Candidate(
        Layout(tp=1, dp=total, ep=True),
        f"DP{total} + EP{total} (wide EP): each GPU is a data-parallel attention rank with "
        "its own KV cache; experts spread over all GPUs via DeepEP all-to-all",
    )
    return [tp_pp, tp_all, wide] if goal == "latency" else [wide, tp_pp, tp_all]


def candidate_layouts(
    profile: ModelProfile, gpu: GpuType, gpus_per_node: int, nodes: int, goal: Goal
) -> tuple[Layout, ...]:
    """Layouts in order of preference for the goal."""
    return tuple(c.layout for c in candidates(profile, gpu, gpus_per_node, nodes, goal))


def candidates(
    profile: ModelProfile, gpu: GpuType, gpn: int, nodes: int, goal: Goal
) -> list[Candidate]:
    if profile.is_moe:
        heads = profile.attention.num_attention_heads
        return [c for c in _moe_candidates(gpu, gpn, nodes, goal) if heads % c.layout.tp == 0]
    return _dense_candidates(profile, gpn, nodes)


def check_layout(
    profile: ModelProfile, gpu: GpuType, layout: Layout, gpus_per_node: int, nodes: int
) -> str | None:
    """Why an admin-requested layout cannot run here, or None."""
    total = gpus_per_node * nodes
    attention = profile.attention
    if layout.gpus != total:
        return f"{layout.describe()} uses {layout.gpus} GPUs, the hardware has {total}"
    if attention.num_attention_heads % layout.tp:
        return f"TP{layout.tp} does not divide {attention.num_attention_heads} attention heads"
    if layout.ep and not profile.is_moe:
        return f"expert parallelism needs an MoE model; {profile.display_name} is dense"
    if layout.ep and gpu.device == "cpu":
        return "expert parallelism does not run on vLLM's CPU build"
    if layout.dcp > 1 and attention.kind != "mla":
        return "decode context parallelism applies to MLA models"
    group = layout.tp * layout.pp
    if nodes > 1 and layout.dp > 1 and gpus_per_node % group:
        return f"a TP x PP group of {group} GPUs must fit inside one node for DP across nodes"
    return None
