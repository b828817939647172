"""``appliance engine run|command``: the local vLLM engine on its own."""

from __future__ import annotations

import shlex
import signal
import sys
import threading

import typer

from appliance.cli.common import ConfigOption, console, settings_from
from appliance.config import Settings
from appliance.engine import EngineSupervisor, spec_from_settings
from appliance.keys.deployment import DeploymentSecrets, deployment_secrets
from appliance.modelstore import ready_engine_model

__all__ = ["app", "exit_on_sigterm", "start_engine"]

app = typer.Typer(help="The local vLLM engine.", no_args_is_help=True)


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so `finally` blocks stop the engine cleanly."""
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(143))


def start_engine(settings: Settings, secrets: DeploymentSecrets) -> EngineSupervisor:
    """Verify the model, start vLLM and wait for it, showing progress throughout."""
    with console.status("preparing model") as status:
        model_dir = ready_engine_model(settings, progress=status.update)
    spec = spec_from_settings(settings, secrets.engine_api_key)
    log_path = settings.data_dir / "logs" / f"engine-{spec.served_model_name}.log"
    supervisor = EngineSupervisor(
        spec,
        log_path=log_path,
        startup_timeout_s=settings.engine.startup_timeout_s,
        max_restarts=settings.engine.max_restarts,
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
    spec = spec_from_settings(settings, "<shared secret>")
    env = spec.environment({}, cpu_count=1)
    env["VLLM_API_KEY"] = "<shared secret>"
    for key, value in sorted(env.items()):
        typer.echo(f"{key}={shlex.quote(value)}")
    typer.echo(shlex.join(spec.argv()))
