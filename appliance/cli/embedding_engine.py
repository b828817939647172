"""The local embedding engine ``appliance up`` starts beside the chat engine
(``embedding_engine:``): the same supervisor, shared secret and TLS, its own port,
vLLM's pooling runner."""

from __future__ import annotations

import ssl
import threading

from appliance.cli.common import console
from appliance.config import Settings, process_environment
from appliance.engine import EngineSupervisor, embedding_spec_from_settings
from appliance.engine.tls import health_tls_from_settings
from appliance.errors import ConfigurationError, ManifestError
from appliance.keys.deployment import DeploymentSecrets
from appliance.modelstore import ready_embedding_model

__all__ = ["BackgroundStart", "embedding_supervisor", "start_in_background"]


def _health_tls(settings: Settings) -> ssl.SSLContext | None:
    try:
        return health_tls_from_settings(settings)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"engine.tls: cannot load the certificates: {exc}") from exc


def embedding_supervisor(settings: Settings, secrets: DeploymentSecrets) -> EngineSupervisor:
    """Verify (or prepare) the embedding model and set up its engine's supervisor; the
    caller starts it (:func:`start_in_background`)."""
    engine = settings.embedding_engine
    with console.status("preparing embedding model") as status:
        try:
            model_dir = ready_embedding_model(settings, progress=status.update)
        except ManifestError as exc:
            if engine.model_dir is not None:
                raise
            raise ManifestError(
                f"{exc} (the embedding engine serves the dev model by default: set "
                "embedding_engine.model_dir, or embedding_engine.enabled: false)"
            ) from exc
    spec = embedding_spec_from_settings(settings, secrets.engine_api_key)
    log_path = settings.data_dir / "logs" / f"engine-{spec.served_model_name}.log"
    console.print(
        f"starting vLLM (pooling runner) for {model_dir} as {spec.served_model_name} "
        f"(log: {log_path})",
        highlight=False,
    )
    return EngineSupervisor(
        spec,
        log_path=log_path,
        base_env=process_environment(),
        startup_timeout_s=engine.startup_timeout_s,
        max_restarts=engine.max_restarts,
        health_tls=_health_tls(settings),
        on_event=lambda message: console.print(f"[yellow]embedding engine:[/yellow] {message}"),
    )


class BackgroundStart:
    """An engine starting on a thread of its own while the chat engine starts (each
    binds its own CPU cores, so the two warm-ups overlap); :meth:`wait` returns once it
    is healthy and re-raises its start error."""

    def __init__(self, supervisor: EngineSupervisor):
        self.supervisor = supervisor
        self._error: BaseException | None = None
        self._done = threading.Event()
        # Daemon, and never returns once the engine runs: the engine's parent-death
        # signal (PR_SET_PDEATHSIG) fires when the *thread* that forked it exits, not
        # the process, so this thread must outlive the engine.
        self._thread = threading.Thread(target=self._run, daemon=True, name="embedding-start")
        self._thread.start()

    def _run(self) -> None:
        try:
            self.supervisor.start()
        except BaseException as exc:  # handed to wait() on the main thread
            self._error = exc
            self._done.set()
            return
        self._done.set()
        threading.Event().wait()  # hold the engine's parent thread (see __init__)

    def wait(self) -> EngineSupervisor:
        with console.status("waiting for the embedding engine"):
            while not self._done.wait(0.5):
                pass
        if self._error is not None:
            raise self._error
        spec = self.supervisor.spec
        console.print(f"embedding engine ready at {spec.url} (pid {self.supervisor.pid})")
        return self.supervisor


def start_in_background(supervisor: EngineSupervisor) -> BackgroundStart:
    return BackgroundStart(supervisor)
