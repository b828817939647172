"""``appliance plan``: will this model fit this hardware, and exactly how to run it."""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Annotated

import typer
import yaml

from appliance.adapters import list_adapters, verify_adapter
from appliance.cli.common import console, err_console, settings_from
from appliance.errors import BundleError, ConfigurationError
from appliance.planner import (
    HEAD_ADDRESS_PLACEHOLDER,
    EmbeddingRequest,
    GpuType,
    Layout,
    ModelProfile,
    Plan,
    PlanRefused,
    PlanRequest,
    find_profile,
    gpu_type,
    make_plan,
    plan_with_embedding,
    render_ansible_vars,
    render_helm_values,
    render_json,
    render_table,
)
from appliance.planner.report import refusal_to_dict
from appliance.planner.serving_values import AdapterPin, adapter_slots
from appliance.release.create import BUNDLE_INFO
from appliance.release.helm_images import bundle_image_values, merge_values

__all__ = ["FabricChoice", "Format", "GoalChoice", "KvDtypeChoice", "PlacementChoice", "plan"]

REFUSED_EXIT_CODE = 2


class Format(enum.StrEnum):
    table = "table"
    json = "json"
    helm_values = "helm-values"
    ansible_vars = "ansible-vars"


class GoalChoice(enum.StrEnum):
    latency = "latency"
    throughput = "throughput"


class KvDtypeChoice(enum.StrEnum):
    auto = "auto"
    fp8 = "fp8"


class FabricChoice(enum.StrEnum):
    none = "none"
    rdma = "rdma"


class PlacementChoice(enum.StrEnum):
    shared = "shared"
    separate = "separate"


def plan(
    model: Annotated[str, typer.Option("--model", "-m", help="Model profile (models list)")],
    gpu: Annotated[
        str, typer.Option("--gpu", help="GPU type: h100 h200 h20 h800 a100 l40s b200 cpu")
    ],
    gpus_per_node: Annotated[int, typer.Option("--gpus-per-node", min=1)] = 8,
    nodes: Annotated[int, typer.Option("--nodes", min=1)] = 1,
    goal: Annotated[GoalChoice, typer.Option("--goal")] = GoalChoice.latency,
    max_model_len: Annotated[
        int | None,
        typer.Option("--max-model-len", min=16, help="Context length (default: the model's)"),
    ] = None,
    kv_cache_dtype: Annotated[KvDtypeChoice, typer.Option("--kv-cache-dtype")] = (
        KvDtypeChoice.auto
    ),
    gpu_memory_utilization: Annotated[
        float, typer.Option("--gpu-memory-utilization", min=0.05, max=1.0)
    ] = 0.9,
    master_addr: Annotated[
        str, typer.Option("--master-addr", help="Head node's private IP (multi-node)")
    ] = HEAD_ADDRESS_PLACEHOLDER,
    fabric: Annotated[
        FabricChoice,
        typer.Option(
            "--fabric",
            help="Fabric between the GPU nodes: rdma (InfiniBand/RoCE with GPUDirect RDMA; "
            "allows wide EP with DeepEP) or none (TCP)",
        ),
    ] = FabricChoice.none,
    memory_mib: Annotated[
        int | None,
        typer.Option("--memory-mib", min=1, help="Override the memory per GPU (MIG, CPU ranks)"),
    ] = None,
    model_path: Annotated[
        str | None,
        typer.Option("--model-path", help="Model directory on the nodes (default /models/NAME)"),
    ] = None,
    output_format: Annotated[Format, typer.Option("--format", "-f")] = Format.table,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to a file instead of stdout")
    ] = None,
    profiles_dir: Annotated[
        Path | None,
        typer.Option(
            "--profiles-dir",
            help="Model profiles (default: the profiles shipped in the package, appliance/models/)",
        ),
    ] = None,
    bundle: Annotated[
        Path | None,
        typer.Option(
            "--bundle",
            help="Release bundle: pin the chart's images to its digests (with -f helm-values)",
        ),
    ] = None,
    image_registry: Annotated[
        str,
        typer.Option("--image-registry", help="Registry the bundle's images were pushed to"),
    ] = "",
    tp: Annotated[int | None, typer.Option("--tp", min=1, help="Force a TP size")] = None,
    pp: Annotated[int | None, typer.Option("--pp", min=1, help="Force a PP size")] = None,
    dp: Annotated[int | None, typer.Option("--dp", min=1, help="Force a DP size")] = None,
    ep: Annotated[
        bool | None, typer.Option("--ep/--no-ep", help="Force expert parallelism on/off")
    ] = None,
    embedding_model: Annotated[
        str | None,
        typer.Option(
            "--embedding-model",
            help="Also plan an embedding engine for this profile (vLLM pooling runner)",
        ),
    ] = None,
    embedding_placement: Annotated[
        PlacementChoice,
        typer.Option(
            "--embedding-placement",
            help="shared: on the chat engine's GPUs (it gives up the share); separate: own GPUs",
        ),
    ] = PlacementChoice.shared,
    embedding_gpus: Annotated[
        int, typer.Option("--embedding-gpus", min=1, help="GPUs of its own (separate)")
    ] = 1,
    embedding_max_model_len: Annotated[
        int, typer.Option("--embedding-max-model-len", min=16, help="Longest embedding input")
    ] = 512,
    max_loras: Annotated[
        int, typer.Option("--max-loras", min=0, help="LoRA adapter slots in one batch (0: none)")
    ] = 0,
    max_lora_rank: Annotated[
        int,
        typer.Option(
            "--max-lora-rank",
            min=0,
            help="Largest adapter rank (default: 16 with slots, the largest stored adapter's "
            "with --model-store)",
        ),
    ] = 0,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Appliance configuration: plan its embedding engine (embedding_engine) and "
            "the adapters of its model store too (only when given)",
            show_default=False,
        ),
    ] = None,
    model_store: Annotated[
        Path | None,
        typer.Option(
            "--model-store",
            help="Model store whose adapters of this model the engine loads (default with "
            "--config: its store); they get LoRA slots and go into the deploy values",
        ),
    ] = None,
) -> None:
    """Plan a model on GPUs: layout, memory per GPU, KV cache, concurrency, commands;
    with --embedding-model, an embedding engine beside it; with --model-store, the
    stored adapters of the model."""
    profile = find_profile(model, profiles_dir)
    path = model_path or f"/models/{profile.name}"
    # The plan depends on its arguments alone unless a configuration is named: an
    # ./appliance.yaml lying around does not change the values an admin deploys.
    settings = settings_from(config) if config is not None else None
    embedding_served: str | None = None
    if settings is not None and embedding_model is None and settings.embedding_engine_enabled:
        embedding_model = settings.embedding_model_dir.name  # store directory = profile name
        embedding_served = settings.embedding_engine.served_model_name
        embedding_max_model_len = settings.embedding_engine.max_model_len
    if model_store is not None and not model_store.is_dir():
        raise ConfigurationError(f"--model-store {model_store} is not a directory")
    store = model_store or (settings.model_store if settings is not None else None)
    adapters = _stored_adapters(store, Path(path).name) if store is not None else []
    if adapters and not max_loras:
        max_loras, max_lora_rank = adapter_slots(adapters)
    elif adapters and not max_lora_rank:
        max_lora_rank = adapter_slots(adapters)[1]
    embedding: tuple[ModelProfile, EmbeddingRequest] | None = None
    if embedding_model is not None:
        embedding_profile = find_profile(embedding_model, profiles_dir)
        try:
            embedding = embedding_profile, EmbeddingRequest(
                model=embedding_profile.name, placement=embedding_placement.value,
                gpus=embedding_gpus, max_model_len=embedding_max_model_len,
                served_model_name=embedding_served,
            )  # fmt: skip
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from exc
    try:
        device = gpu_type(gpu)
        layout = _forced_layout(profile, device, gpus_per_node * nodes, tp, pp, dp, ep)
        request = PlanRequest(
            model=profile.name,
            gpu=device.key,
            gpus_per_node=gpus_per_node,
            nodes=nodes,
            goal=goal.value,
            max_model_len=max_model_len,
            kv_cache_dtype=kv_cache_dtype.value,
            gpu_memory_utilization=gpu_memory_utilization,
            master_addr=master_addr,
            memory_mib=memory_mib,
            layout=layout,
            fabric=fabric.value,
            max_loras=max_loras,
            max_lora_rank=max_lora_rank or (16 if max_loras else 0),  # vLLM's default rank
        )
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from exc
    try:
        if embedding is None:
            result = make_plan(profile, device, request)
        else:
            result = plan_with_embedding(profile, device, request, *embedding)
    except PlanRefused as refusal:
        if output_format is Format.json:
            _emit(json.dumps(refusal_to_dict(refusal), indent=2) + "\n", output)
        err_console.print("does not fit:", style="red", end=" ", soft_wrap=True)
        err_console.print(refusal.reason, markup=False, highlight=False, soft_wrap=True)
        for suggestion in refusal.suggestions:
            err_console.print(f"  would fit: {suggestion}", markup=False, highlight=False)
        raise typer.Exit(REFUSED_EXIT_CODE) from None
    if output_format is Format.table:
        if output is not None:
            raise ConfigurationError("--output needs --format json, helm-values or ansible-vars")
        console.print(render_table(result, path))
        return
    renderers = {
        Format.json: lambda: render_json(result),
        Format.helm_values: lambda: _helm_values(result, path, adapters, bundle, image_registry),
        Format.ansible_vars: lambda: render_ansible_vars(result, path, adapters=adapters),
    }
    _emit(renderers[output_format](), output)


def _stored_adapters(store: Path, base: str) -> list[AdapterPin]:
    """The store's adapters of ``base``, each verified against its manifest: the deploy
    values pin the manifest's sha256, so it must be one that holds."""
    pins = []
    for adapter in list_adapters(store, base):
        verify_adapter(adapter)
        pins.append(AdapterPin(adapter.name, adapter.rank, adapter.manifest_sha256))
    return pins


def _helm_values(
    plan: Plan, path: str, adapters: list[AdapterPin], bundle: Path | None, registry: str
) -> str:
    """The planner's values; with a bundle, its image digests merged in."""
    text = render_helm_values(plan, path, adapters=adapters)
    if bundle is None:
        return text
    try:
        info = json.loads((bundle / BUNDLE_INFO).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BundleError(f"{bundle} is not a release bundle: no readable {BUNDLE_INFO}") from exc
    images = bundle_image_values(info, device=plan.device, registry=registry)
    header = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
    values = merge_values(yaml.safe_load(text), images)
    note = f"# images pinned by digest from bundle {info.get('version')} ({bundle})\n"
    return header + note + yaml.safe_dump(values, sort_keys=False)


def _forced_layout(
    profile: ModelProfile, device: GpuType, total: int,
    tp: int | None, pp: int | None, dp: int | None, ep: bool | None,
) -> Layout | None:  # fmt: skip
    """The admin's layout when any of --tp/--pp/--dp/--ep is given; DP fills the rest."""
    if tp is None and pp is None and dp is None and ep is None:
        return None
    tp, pp = tp or 1, pp or 1
    dp = dp or max(1, total // (tp * pp))
    if ep is None:
        ep = profile.is_moe and device.device == "gpu" and (tp > 1 or dp > 1) and pp == 1
    return Layout(tp=tp, pp=pp, dp=dp, ep=ep)


def _emit(text: str, output: Path | None) -> None:
    if output is None:
        typer.echo(text, nl=False)
        return
    output.write_text(text, encoding="utf-8")
    err_console.print(f"wrote {output}", highlight=False)
