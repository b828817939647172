"""``appliance engine run|command|args|start``: the local vLLM engine on its own, or
one node of a planned deployment."""

from __future__ import annotations

import os
import shlex
import signal
import ssl
import subprocess
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from appliance.adapters import engine_lora_serving, lora_serving
from appliance.cli.common import ConfigOption, console, settings_from
from appliance.config import Settings, process_environment
from appliance.engine import (
    EngineSupervisor,
    LaunchSpec,
    engine_tls_from_settings,
    health_tls_from_settings,
    spec_from_settings,
)
from appliance.engine.plan_launch import HeadlessLaunchSpec, launch_spec_from_plan, read_plan
from appliance.errors import ConfigurationError
from appliance.keys.deployment import DeploymentSecrets, deployment_secrets
from appliance.modelstore import ready_engine_model, verify_manifest
from appliance.planner.commands import Role

__all__ = ["app", "exit_on_sigterm", "start_engine"]

app = typer.Typer(help="The local vLLM engine.", no_args_is_help=True)


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so `finally` blocks stop the engine cleanly."""
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))


def start_engine(settings: Settings, secrets: DeploymentSecrets) -> EngineSupervisor:
    """Verify the model, start vLLM and wait for it, showing progress throughout."""
    with console.status("preparing model") as status:
        model_dir = ready_engine_model(settings, progress=status.update)
        status.update("verifying adapters")
        lora = engine_lora_serving(settings)  # each checked against its manifest
    spec = spec_from_settings(settings, secrets.engine_api_key, lora=lora)
    if lora is not None:
        names = ", ".join(module.name for module in lora.modules)
        console.print(f"serving {len(lora.modules)} adapter(s): {names}", highlight=False)
    log_path = settings.data_dir / "logs" / f"engine-{spec.served_model_name}.log"
    supervisor = EngineSupervisor(
        spec,
        log_path=log_path,
        base_env=process_environment(),
        startup_timeout_s=settings.engine.startup_timeout_s,
        max_restarts=settings.engine.max_restarts,
        health_tls=_health_tls(settings),
        on_event=lambda message: console.print(f"[yellow]engine:[/yellow] {message}"),
    )
    console.print(f"starting vLLM for {model_dir} (log: {log_path})", highlight=False)
    with console.status("starting engine") as status:

        def waiting(elapsed: float) -> None:
            last = supervisor.last_line()[-90:]
            status.update(f"engine warming up ({elapsed:.0f}s; first start compiles): {last}")

        supervisor.start(on_wait=waiting)
    console.print(f"engine ready at {spec.url} (pid {supervisor.pid})")
    return supervisor


@app.command("run")
def run(config: ConfigOption = None) -> None:
    """Start the engine from the configuration and keep it running until Ctrl-C."""
    settings = settings_from(config)
    exit_on_sigterm()
    supervisor: EngineSupervisor | None = None
    try:
        supervisor = start_engine(settings, deployment_secrets(settings))
        threading.Event().wait()
    except KeyboardInterrupt:
        console.print("stopping engine")
    finally:
        if supervisor is not None:
            supervisor.stop()


@app.command("command")
def command(config: ConfigOption = None) -> None:
    """Print the vLLM command line and environment the engine would run with."""
    settings = settings_from(config)
    spec = spec_from_settings(settings, "<shared secret>", lora=engine_lora_serving(settings))
    env = spec.environment({}, cpu_count=1)
    env["VLLM_API_KEY"] = "<shared secret>"
    for key, value in sorted(env.items()):
        typer.echo(f"{key}={shlex.quote(value)}")
    typer.echo(shlex.join(spec.argv()))


PlanOption = Annotated[Path, typer.Option("--plan", help="Plan file (appliance plan -f json)")]
RoleOption = Annotated[str, typer.Option("--role", help="head or worker")]
NodeRankOption = Annotated[
    int | None, typer.Option("--node-rank", help="Worker node rank (default: the first worker)")
]
ModelDirOption = Annotated[
    Path | None, typer.Option("--model-dir", help="Model directory (default: store/NAME)")
]
MasterAddrOption = Annotated[
    str | None, typer.Option("--master-addr", help="Head node's private IP (multi-node)")
]


def _health_tls(settings: Settings) -> ssl.SSLContext | None:
    try:
        return health_tls_from_settings(settings)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"engine.tls: cannot load the certificates: {exc}") from exc


def _environment(spec: LaunchSpec, base: dict[str, str]) -> dict[str, str]:
    try:
        return spec.environment(base, cpu_count=os.cpu_count() or 1)
    except ValueError as exc:  # more CPU ranks than this host has cores
        raise ConfigurationError(str(exc)) from exc


def _plan_spec(
    settings: Settings, plan_file: Path, role: str, node_rank: int | None,
    model_dir: Path | None, master_addr: str | None, api_key: str,
) -> LaunchSpec:  # fmt: skip
    if role not in ("head", "worker"):
        raise ConfigurationError(f"--role must be head or worker, not {role!r}")
    plan = read_plan(plan_file)
    role_value: Role = "head" if role == "head" else "worker"
    directory = (model_dir or settings.model_store / plan.model).resolve()
    # Every node gets the model's adapters (verified here), named <served>:<adapter>.
    lora = lora_serving(settings.model_store, directory.name, plan.served_model_name)
    try:
        return launch_spec_from_plan(
            plan, role=role_value, node_rank=node_rank, model_dir=directory,
            api_key=api_key, host=settings.engine.host, port=settings.engine.port,
            master_addr=master_addr, tls=engine_tls_from_settings(settings), lora=lora,
        )  # fmt: skip
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from exc


@app.command("args")
def args(
    plan: PlanOption,
    role: RoleOption = "head",
    node_rank: NodeRankOption = None,
    model_dir: ModelDirOption = None,
    master_addr: MasterAddrOption = None,
    config: ConfigOption = None,
) -> None:
    """Print the environment and argv one node of a plan runs."""
    settings = settings_from(config)
    spec = _plan_spec(settings, plan, role, node_rank, model_dir, master_addr, "<shared secret>")
    env = _environment(spec, {})
    env["VLLM_API_KEY"] = "<shared secret>"
    for key, value in sorted(env.items()):
        typer.echo(f"{key}={shlex.quote(value)}")
    typer.echo(shlex.join(spec.argv()))


@app.command("start")
def start(
    plan: PlanOption,
    role: RoleOption = "head",
    node_rank: NodeRankOption = None,
    model_dir: ModelDirOption = None,
    master_addr: MasterAddrOption = None,
    config: ConfigOption = None,
) -> None:
    """Verify the model and run one node of a plan: the head under the supervisor
    (until Ctrl-C), a worker in the foreground."""
    settings = settings_from(config)
    secrets = deployment_secrets(settings)
    spec = _plan_spec(
        settings, plan, role, node_rank, model_dir, master_addr, secrets.engine_api_key
    )
    _environment(spec, {})  # a CPU plan with more ranks than cores fails here, not later
    with console.status("verifying model") as status:
        verify_manifest(spec.model_dir, on_file=lambda name: status.update(f"verifying {name}"))
    exit_on_sigterm()
    if isinstance(spec, HeadlessLaunchSpec):
        console.print(f"starting headless worker: {shlex.join(spec.argv())}", highlight=False)
        code = subprocess.call(spec.argv(), env=_environment(spec, process_environment()))
        raise typer.Exit(code)
    log_path = settings.data_dir / "logs" / f"engine-{spec.served_model_name}.log"
    supervisor = EngineSupervisor(
        spec, log_path=log_path, base_env=process_environment(),
        startup_timeout_s=settings.engine.startup_timeout_s,
        max_restarts=settings.engine.max_restarts, health_tls=_health_tls(settings),
        on_event=lambda message: console.print(f"[yellow]engine:[/yellow] {message}"),
    )  # fmt: skip
    try:
        with console.status("starting engine") as status:
            supervisor.start(on_wait=lambda elapsed: status.update(
                f"engine warming up ({elapsed:.0f}s): {supervisor.last_line()[-90:]}"))  # fmt: skip
        console.print(f"engine ready at {spec.url} (pid {supervisor.pid})")
        threading.Event().wait()
    except KeyboardInterrupt:
        console.print("stopping engine")
    finally:
        supervisor.stop()
