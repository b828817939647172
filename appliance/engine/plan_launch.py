"""From a planner :class:`~appliance.planner.Plan` to the :class:`LaunchSpec` one node
runs: the head serves the OpenAI API, workers run headless.

Pure apart from :func:`read_plan`, which reads a plan file written by
``appliance plan --format json``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from appliance.engine.launch import EngineTls, LaunchSpec, LoraServing
from appliance.errors import ConfigurationError
from appliance.planner import HEAD_ADDRESS_PLACEHOLDER, Plan, plan_from_dict
from appliance.planner.commands import Role
from appliance.planner.profiles import (
    CHAT_TEMPLATES_SUBDIR,
    ENGINE_CHAT_TEMPLATE_DIR,
    default_profiles_dir,
)

__all__ = ["HeadlessLaunchSpec", "launch_spec_from_plan", "read_plan"]


@dataclass(frozen=True)
class HeadlessLaunchSpec(LaunchSpec):
    """A worker node (``serve ... --headless``, the same entry point as the head). It
    serves no HTTP, so nothing polls its health; the head reports the group's."""


def _local_chat_template(args: list[str]) -> list[str]:
    """Plans name chat templates where the deploy paths put them
    (:data:`ENGINE_CHAT_TEMPLATE_DIR`); a host that has no copy there takes the one the
    appliance package carries, the same file."""
    if "--chat-template" not in args:
        return args
    index = args.index("--chat-template") + 1
    named = Path(args[index])
    if named.is_file() or named.parent != Path(ENGINE_CHAT_TEMPLATE_DIR):
        return args
    packaged = default_profiles_dir() / CHAT_TEMPLATES_SUBDIR / named.name
    if not packaged.is_file():
        raise ConfigurationError(
            f"chat template {named} is missing here and the appliance package has no "
            f"{named.name}: copy it there (appliance plan -f ansible-vars carries it)"
        )
    return [*args[:index], str(packaged), *args[index + 1 :]]


_LORA_SLOT_FLAGS = ("--max-loras", "--max-lora-rank")


def _planned_lora(
    extra: list[str], lora: LoraServing | None
) -> tuple[list[str], LoraServing | None]:
    """A plan that reserved LoRA slots (``appliance plan --max-loras``) keeps them: its
    memory was planned for those. The adapters then join with their modules only, once
    (not a second --enable-lora), and each must fit the planned rank. Without adapters
    the plan's flags stay as they are (slots for adapters loaded at runtime)."""
    if lora is None or "--enable-lora" not in extra:
        return extra, lora
    slots: dict[str, int] = {}
    kept: list[str] = []
    args = iter(extra)
    for arg in args:
        if arg in _LORA_SLOT_FLAGS:
            slots[arg] = int(next(args))
        elif arg != "--enable-lora":
            kept.append(arg)
    rank = slots["--max-lora-rank"]
    for module in lora.modules:
        if module.rank > rank:
            raise ConfigurationError(
                f"adapter {module.name} has rank {module.rank}, but the plan reserved LoRA "
                f"slots of rank {rank}: plan again with --max-lora-rank {module.rank}"
            )
    return kept, replace(lora, max_loras=slots["--max-loras"], max_rank=rank)


def read_plan(path: Path) -> Plan:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigurationError(f"cannot read plan {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"plan {path} is not JSON: {exc.msg}") from exc
    if isinstance(data, dict) and data.get("fits") is False:
        raise ConfigurationError(f"plan {path} is a refusal: {data.get('reason', '')}")
    return plan_from_dict(data)


def launch_spec_from_plan(
    plan: Plan,
    *,
    role: Role,
    model_dir: Path,
    api_key: str,
    port: int,
    host: str = "127.0.0.1",
    node_rank: int | None = None,
    master_addr: str | None = None,
    python: str = sys.executable,
    tls: EngineTls | None = None,
    lora: LoraServing | None = None,
) -> LaunchSpec:
    """The spec for one node of ``plan``. ``master_addr`` replaces the head address the
    plan was made with; a plan still holding the placeholder is refused for
    multi-node use. ``tls`` applies to the head only: headless workers serve no HTTP.
    ``lora`` goes to every node: each node's workers build the LoRA layers and read the
    adapter files, so the adapters must sit at the same path on every node."""
    command = plan.command(role, node_rank)
    extra = list(command.extra_args)
    if master_addr is not None:
        extra = [master_addr if arg == plan.request.master_addr else arg for arg in extra]
    if HEAD_ADDRESS_PLACEHOLDER in extra:
        raise ConfigurationError(
            "the plan has no head node address: pass --master-addr (the head's private IP)"
        )
    extra = _local_chat_template(extra)
    extra, lora = _planned_lora(extra, lora)
    headless = "--headless" in extra
    spec_type = HeadlessLaunchSpec if headless else LaunchSpec
    return spec_type(
        model_dir=model_dir,
        served_model_name=plan.served_model_name,
        port=port,
        api_key=api_key,
        host=host,
        device=plan.device,
        tensor_parallel_size=plan.layout.tp,
        pipeline_parallel_size=plan.layout.pp,
        data_parallel_size=plan.layout.dp,
        max_model_len=plan.max_model_len,
        dtype=plan.dtype,
        kv_cache_gib=float(plan.cpu_kv_cache_gib or 1),
        gpu_memory_utilization=plan.gpu_memory_utilization,
        python=python,
        extra_args=tuple(extra),
        extra_env=dict(command.env),
        tls=None if headless else tls,
        lora=lora,
    )
