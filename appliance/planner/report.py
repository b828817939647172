"""Plans as text: a readable table, JSON (which ``engine args --plan`` reads back),
Helm values and Ansible variables. Formatting only; the one read is of the chat templates
a plan's ``--chat-template`` names (package data), which the Helm values and Ansible
variables carry to the engine hosts."""

from __future__ import annotations

import itertools
import json
import math
import shlex
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError
from rich.console import Group, RenderableType
from rich.table import Table

from appliance.engine.launch import lora_rank_limit
from appliance.errors import ConfigurationError
from appliance.planner.capacity import Plan, PlanRefused
from appliance.planner.commands import NodeCommand, core_args
from appliance.planner.memory import GIB
from appliance.planner.profiles import ENGINE_CHAT_TEMPLATE_DIR, read_chat_template
from appliance.planner.serving_values import (
    AdapterPin,
    ansible_adapters,
    ansible_embedding_engine,
    embedding_notes,
    helm_adapters,
    helm_embedding_engine,
    without_lora_flags,
)

__all__ = [
    "PLAN_SCHEMA",
    "chat_templates",
    "plan_from_dict",
    "plan_to_dict",
    "refusal_to_dict",
    "render_ansible_vars",
    "render_helm_values",
    "render_json",
    "render_table",
    "serve_args",
    "serve_command",
]

PLAN_SCHEMA = "appliance.plan/v1"
_PLAN_ADAPTER: TypeAdapter[Plan] = TypeAdapter(Plan)
_STARTUP_PROBE_BUDGET_S = {True: 2700, False: 600}  # 45 min for a 671B model (llm-d)
_SHM_GIB = {"gpu": 16, "cpu": 1}  # /dev/shm: 16Gi default for GPU nodes (reference §5.4)
_HOST_HEADROOM_GIB = 32  # host memory beyond the node's weights and /dev/shm
_CPU_PER_GPU = 4  # llm-d: 32 cores for 8 GPUs
_ANSIBLE_RAW_START, _ANSIBLE_RAW_END = "{% raw %}", "{% endraw %}"


def serve_args(plan: Plan, command: NodeCommand) -> list[str]:
    """All ``vllm serve`` flags of one node: the core ones, then the role's own."""
    utilization = plan.gpu_memory_utilization if plan.device == "gpu" else None
    core = core_args(
        plan.layout,
        max_model_len=plan.max_model_len,
        dtype=plan.dtype,
        gpu_memory_utilization=utilization,
    )
    return ["--served-model-name", plan.served_model_name, *core, *command.extra_args]


def _node_args(plan: Plan, command: NodeCommand, lora_in_values: bool) -> list[str]:
    """A node's flags; without the LoRA slot flags where the deploy values carry the
    slots (the chart and the role then add them, once)."""
    args = serve_args(plan, command)
    return without_lora_flags(args) if lora_in_values else args


def serve_command(plan: Plan, command: NodeCommand, model_path: str) -> str:
    return shlex.join(["vllm", "serve", model_path, *serve_args(plan, command)])


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    data: dict[str, Any] = {"schema": PLAN_SCHEMA, **asdict(plan)}
    data["commands"] = [{**asdict(command), "env": dict(command.env)} for command in plan.commands]
    memory = plan.memory
    data["summary"] = {
        "layout": plan.layout.describe(),
        "weights_gib_per_gpu": round(memory.weight_bytes / GIB, 2),
        "kv_cache_gib_per_gpu": round(memory.kv_bytes / GIB, 2),
        "kv_tokens_per_replica": memory.kv_tokens_per_replica,
        "kv_tokens_total": memory.kv_tokens_total,
        "max_concurrency": round(memory.concurrency, 2),
        "lora_gib_per_gpu": round(memory.lora_bytes / GIB, 3),
    }
    if plan.embedding is not None:
        data["summary"]["embedding_gib_per_gpu"] = round(plan.embedding.total_bytes / GIB, 2)
        data["summary"]["gpus_total"] = plan.layout.gpus + plan.embedding.gpus
    return data


def plan_from_dict(data: Any) -> Plan:
    """Read back :func:`plan_to_dict`'s output; ConfigurationError if it is not a plan."""
    if not isinstance(data, dict) or data.get("schema") != PLAN_SCHEMA:
        raise ConfigurationError(f"not an appliance plan (expected schema {PLAN_SCHEMA})")
    fields = {key: value for key, value in data.items() if key not in ("schema", "summary")}
    try:
        return _PLAN_ADAPTER.validate_python(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ConfigurationError(f"invalid plan: {where}: {first['msg']}") from exc


def refusal_to_dict(refusal: PlanRefused) -> dict[str, Any]:
    return {
        "schema": PLAN_SCHEMA,
        "fits": False,
        "reason": refusal.reason,
        "suggestions": list(refusal.suggestions),
    }


def render_json(plan: Plan) -> str:
    return json.dumps({"fits": True, **plan_to_dict(plan)}, indent=2) + "\n"


def _gib(value: int) -> str:
    return f"{value / GIB:,.1f} GiB"


def _lora_row(plan: Plan) -> str:
    if not plan.request.max_loras:
        return "none (--max-loras 0)"
    rank = lora_rank_limit(plan.request.max_lora_rank)
    return f"{plan.memory.lora_bytes / GIB:,.2f} GiB ({plan.request.max_loras} x rank {rank})"


def render_table(plan: Plan, model_path: str) -> RenderableType:
    memory = plan.memory
    summary = Table(title=f"{plan.display_name} on {plan.nodes} x {plan.gpus_per_node} x "
                    f"{plan.gpu_name}", show_header=False, title_justify="left")  # fmt: skip
    summary.add_column(style="bold")
    summary.add_column()
    rows = [
        ("fits", "yes"),
        ("goal", plan.request.goal),
        ("layout", plan.layout.describe()),
        ("tensor / pipeline / data parallel", f"{plan.layout.tp} / {plan.layout.pp} / "
         f"{plan.layout.dp}"),
        ("expert parallel", f"on (EP{plan.layout.ep_size})" if plan.layout.ep else "off"),
        ("decode context parallel", str(plan.layout.dcp) if plan.layout.dcp > 1 else "off"),
        ("usable memory per GPU", f"{_gib(memory.usable_bytes)} "
         f"(x {plan.gpu_memory_utilization})"),
        ("weights per GPU", _gib(memory.weight_bytes)),
        ("runtime overhead per GPU", _gib(memory.overhead_bytes)),
        ("LoRA adapter slots per GPU", _lora_row(plan)),
        ("KV cache per GPU", _gib(memory.kv_bytes)),
        ("KV bytes per token", f"{memory.kv_bytes_per_token:,} ({plan.kv_cache_dtype})"),
        ("KV tokens", f"{memory.kv_tokens_per_replica:,} per replica x {memory.replicas} = "
         f"{memory.kv_tokens_total:,}"),
        ("max model len", f"{plan.max_model_len:,}"),
        ("max concurrency", f"{memory.concurrency:.1f} full-length requests"),
    ]  # fmt: skip
    if plan.embedding is not None:
        rows += _embedding_rows(plan)
    for key, value in rows:
        summary.add_row(key, value)
    commands = Table(title="commands", title_justify="left", show_lines=True)
    commands.add_column("node")
    commands.add_column("command (environment below)", overflow="fold")
    for command in plan.commands:
        commands.add_row(
            f"{command.node_rank} ({command.role})", serve_command(plan, command, model_path)
        )
    if plan.embedding is not None:
        path = f"/models/{plan.embedding.model}"
        commands.add_row("embedding", shlex.join(["vllm", "serve", path, *plan.embedding.args]))
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(plan.commands[0].env.items()))
    parts: list[RenderableType] = [summary, commands, f"[bold]environment:[/bold] {env}"]
    parts.append("[bold]why:[/bold]")
    parts += [f"  - {line}" for line in plan.explanation]
    parts += [f"[yellow]warning:[/yellow] {line}" for line in plan.warnings]
    return Group(*parts)


def _embedding_rows(plan: Plan) -> list[tuple[str, str]]:
    embedding = plan.embedding
    assert embedding is not None
    if embedding.placement == "shared":
        where = f"shares the first GPU ({embedding.gpu_memory_utilization:.2f} of it)"
    else:
        where = f"{embedding.gpus} GPU(s) of its own"
    return [
        ("embedding engine", f"{embedding.served_model_name} ({embedding.model}), {where}"),
        ("embedding memory", f"{_gib(embedding.total_bytes)}: weights "
         f"{_gib(embedding.weight_bytes)}, activations {_gib(embedding.activation_bytes)}, "
         f"KV {_gib(embedding.kv_bytes)}, overhead {_gib(embedding.overhead_bytes)}"),
        ("GPUs in all", str(plan.layout.gpus + embedding.gpus)),
    ]  # fmt: skip


def _startup_budget(plan: Plan) -> int:
    return _STARTUP_PROBE_BUDGET_S[plan.memory.weight_bytes * plan.layout.gpus > 100 * GIB]


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (the chat templates) as literal blocks, readable in the file."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _represent_str)


def _yaml(data: dict[str, Any]) -> str:
    return yaml.dump(data, Dumper=_BlockDumper, sort_keys=False, allow_unicode=True)


def chat_templates(plan: Plan, profiles_dir: Path | None = None) -> dict[str, str]:
    """The chat templates the plan's ``--chat-template`` flags name, by file name, read
    from ``chat_templates/`` next to the profiles. The engine finds them in
    :data:`~appliance.planner.profiles.ENGINE_CHAT_TEMPLATE_DIR`, where the chart mounts
    them (engine.chatTemplates) and the Ansible role copies them
    (appliance_engine_chat_templates)."""
    names: set[str] = set()
    for command in plan.commands:
        args = command.extra_args
        for flag, value in itertools.pairwise(args):
            if flag != "--chat-template":
                continue
            directory, _, name = value.rpartition("/")
            if directory != ENGINE_CHAT_TEMPLATE_DIR:
                raise ConfigurationError(
                    f"the plan's --chat-template {value} is not in {ENGINE_CHAT_TEMPLATE_DIR}, "
                    "where the chart and the Ansible role place the templates; re-run the planner"
                )
            names.add(name)
    return {name: read_chat_template(name, profiles_dir) for name in sorted(names)}


def render_helm_values(
    plan: Plan,
    model_path: str,
    *,
    profiles_dir: Path | None = None,
    adapters: Sequence[AdapterPin] = (),
) -> str:
    """Values for the appliance chart's engine (LeaderWorkerSet: one leader per group,
    ``nodes - 1`` workers). The chat templates the plan names travel as
    ``engine.chatTemplates`` (a ConfigMap mounted into the engine pods); LoRA slots and
    ``adapters`` as ``engine.adapters``, the embedding engine as ``embeddingEngine``
    (serving_values.py)."""
    head = plan.command("head")
    lora = helm_adapters(plan, adapters)
    engine: dict[str, Any] = {
        "model": {
            "name": plan.model,
            "servedModelName": plan.served_model_name,
            "path": model_path,
        },
        "device": plan.device,
        "gpuType": plan.gpu,
        "nodes": plan.nodes,
        "gpusPerNode": plan.gpus_per_node,
        "parallelism": {
            "tensor": plan.layout.tp,
            "pipeline": plan.layout.pp,
            "data": plan.layout.dp,
            "expert": plan.layout.ep,
            "decodeContext": plan.layout.dcp,
        },
        "maxModelLen": plan.max_model_len,
        "kvCacheDtype": plan.kv_cache_dtype,
        "gpuMemoryUtilization": plan.gpu_memory_utilization,
        "leader": {
            "args": _node_args(plan, head, lora is not None),
            "env": dict(sorted(head.env.items())),
        },
        "startupProbe": {"failureThreshold": _startup_budget(plan) // 10, "periodSeconds": 10},
    }
    if templates := chat_templates(plan, profiles_dir):
        engine["chatTemplates"] = templates
    if plan.nodes > 1:
        worker = plan.command("worker")
        engine["worker"] = {
            "replicas": plan.nodes - 1,
            "args": _node_args(plan, worker, lora is not None),
            "env": dict(sorted(worker.env.items())),
        }
    if lora is not None:
        engine["adapters"] = lora
    shm_gib = _SHM_GIB[plan.device]
    engine["shmSize"] = f"{shm_gib}Gi"
    if plan.device == "gpu":
        engine["resources"] = _gpu_pod_resources(plan, shm_gib)
    header = (
        f"# appliance plan: {plan.layout.describe()}, {plan.memory.kv_tokens_total:,} KV tokens\n"
    )
    if plan.needs_rdma:
        # The site declared an RDMA fabric (--fabric rdma): the engine pods attach it.
        # Its resource name, Multus networks and HCAs are the site's (site values).
        engine["rdma"] = {"enabled": True}
        if plan.uses_deepep:
            header += (
                "# wide EP (DeepEP): the chart refuses this plan until the site values set\n"
                "# engine.rdma.runAsRoot: true (IPC_LOCK and SYS_RAWIO work only for root;\n"
                "# docs/helm.md, RDMA fabric and wide EP)\n"
            )
    values: dict[str, Any] = {"engine": engine}
    if (embedding := helm_embedding_engine(plan, model_path)) is not None:
        values["embeddingEngine"] = embedding
    header += "".join(f"# {line}\n" for line in embedding_notes(plan, kubernetes=True))
    return header + _yaml(values)


def _gpu_pod_resources(plan: Plan, shm_gib: int) -> dict[str, Any]:
    """One engine pod per node: its GPUs, and host memory for loading that node's share
    of the weights plus the in-memory /dev/shm (which counts against the limit)."""
    weights_gib = math.ceil(plan.memory.weight_bytes * plan.gpus_per_node / GIB)
    memory = f"{weights_gib + shm_gib + _HOST_HEADROOM_GIB}Gi"
    cpu = str(_CPU_PER_GPU * plan.gpus_per_node)
    return {
        "requests": {"cpu": cpu, "memory": memory},
        # NVIDIA only: the catalog has no GPU of another vendor with a deploy path.
        "limits": {"nvidia.com/gpu": plan.gpus_per_node, "memory": memory},
    }


def render_ansible_vars(
    plan: Plan,
    model_path: str,
    *,
    profiles_dir: Path | None = None,
    adapters: Sequence[AdapterPin] = (),
) -> str:
    """Variables for the ``appliance_engine`` role (per-node args by node rank). The chat
    templates the plan names travel as ``appliance_engine_chat_templates`` (the role writes
    them where ``--chat-template`` points); LoRA slots, ``adapters`` and the embedding
    engine as the role's own variables (serving_values.py)."""
    lora = ansible_adapters(plan, adapters)
    data: dict[str, Any] = {
        "appliance_engine_model_name": plan.model,
        "appliance_engine_served_model_name": plan.served_model_name,
        "appliance_engine_model_path": model_path,
        "appliance_engine_device": plan.device,
        "appliance_engine_nodes": plan.nodes,
        "appliance_engine_gpus_per_node": plan.gpus_per_node,
        "appliance_engine_tensor_parallel_size": plan.layout.tp,
        "appliance_engine_pipeline_parallel_size": plan.layout.pp,
        "appliance_engine_data_parallel_size": plan.layout.dp,
        "appliance_engine_expert_parallel": plan.layout.ep,
        "appliance_engine_max_model_len": plan.max_model_len,
        "appliance_engine_kv_cache_dtype": plan.kv_cache_dtype,
        "appliance_engine_gpu_memory_utilization": plan.gpu_memory_utilization,
        "appliance_engine_startup_timeout_s": _startup_budget(plan),
        "appliance_engine_node_args": {
            command.node_rank: _node_args(plan, command, bool(lora)) for command in plan.commands
        },
        "appliance_engine_env": dict(sorted(plan.command("head").env.items())),
    }
    # Ansible would render the templates' own Jinja when it reads the variable: raw.
    templates = chat_templates(plan, profiles_dir)
    if any(_ANSIBLE_RAW_END in text for text in templates.values()):
        raise ConfigurationError(f"a chat template contains {_ANSIBLE_RAW_END}")
    data["appliance_engine_chat_templates"] = {
        name: f"{_ANSIBLE_RAW_START}{text}{_ANSIBLE_RAW_END}" for name, text in templates.items()
    }
    data |= lora | ansible_embedding_engine(plan, model_path)
    notes = "".join(f"# {line}\n" for line in embedding_notes(plan, kubernetes=False))
    return "---\n" + notes + _yaml(data)
