"""``appliance audit forward``: stream record metadata to the SOC's SIEM.

Thin: parses, calls :mod:`appliance.audit.forward`, prints. Registered on the
``audit`` command group by :mod:`appliance.cli.audit`.
"""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer

from appliance.audit.forward import Batch, Forwarder, ForwardError, forwarder_for
from appliance.cli.audit_store import audit_store
from appliance.cli.common import ConfigOption, console, err_console
from appliance.config import Settings

__all__ = ["forward"]


def forward(
    once: Annotated[
        bool,
        typer.Option(
            "--once",
            help="Forward what the log holds now, then exit (cron, tests); exit 1 if the "
            "SIEM does not take it",
        ),
    ] = False,
    interval: Annotated[
        float | None,
        typer.Option(
            "--interval",
            min=0.1,
            help="Seconds between looks for new records; default: audit.forward.poll_interval_s",
            show_default=False,
        ),
    ] = None,
    from_index: Annotated[
        int | None,
        typer.Option(
            "--from-index",
            min=0,
            help="Start at this log index instead of the saved cursor (resend; the SIEM "
            "drops repeats by index)",
            show_default=False,
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Forward record metadata (never prompts or answers) to your SIEM, in log order:
    RFC 5424 syslog, CEF or OCSF over TLS, TCP or UDP, as audit.forward in
    appliance.yaml says. Follows the log until stopped (Ctrl-C, SIGTERM); resumes
    from its cursor in the database (one per destination; one forwarder runs per
    destination, a second waits). At least once: after a crash the last batch may
    arrive again, with the same log index."""
    with audit_store(config) as (settings, store):
        forwarder = forwarder_for(settings, store)
        try:
            _run(forwarder, settings, once=once, interval=interval, from_index=from_index)
        finally:
            forwarder.release()


def _retry(error: ForwardError, delay: float) -> None:
    err_console.print(
        f"warning: {error.message}; retrying in {delay:g} s", markup=False, highlight=False
    )


def _progress(batch: Batch) -> None:
    console.print(
        f"forwarded records {batch.first}-{batch.last} ({batch.count}); {batch.behind} behind",
        highlight=False,
    )


def _announce(forwarder: Forwarder, settings: Settings, start: int) -> None:
    if forwarder.imported_from is not None:
        console.print(
            f"imported the position (record {forwarder.imported_index}) from the old "
            f"cursor file {forwarder.imported_from}; it is kept in the database now and "
            "the file is no longer read (left as it is: delete it when you like)",
            highlight=False,
        )
    console.print(
        f"forwarding {settings.audit.origin} from record {start} to "
        f"{forwarder.destination} as {forwarder.fmt} "
        f"(cursor: database, {forwarder.cursors.key})",
        highlight=False,
    )


def _run(
    forwarder: Forwarder,
    settings: Settings,
    *,
    once: bool,
    interval: float | None,
    from_index: int | None,
) -> None:
    if once:
        _announce(forwarder, settings, forwarder.position(from_index).next_index)
        sent = forwarder.run_once(_progress)
        after = forwarder.next_index
        console.print(f"done: {sent} record(s) forwarded; next is {after}", highlight=False)
        return
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        start = _first_position(forwarder, settings, from_index, stop)
        if start is not None:
            _announce(forwarder, settings, start)
            forwarder.follow(
                interval_s=interval or settings.audit.forward.poll_interval_s,
                max_backoff_s=settings.audit.forward.max_backoff_s,
                stop=stop, on_batch=_progress, on_retry=_retry,
            )  # fmt: skip
    except KeyboardInterrupt:
        pass  # the cursor is saved after every batch
    finally:
        signal.signal(signal.SIGTERM, previous)
    console.print(f"stopped; next is {forwarder.next_index}", highlight=False)


def _first_position(
    forwarder: Forwarder, settings: Settings, from_index: int | None, stop: threading.Event
) -> int | None:
    """Claim the cursor, retrying with backoff while another forwarder holds it or the
    database is down; None when stopped meanwhile."""
    delay = settings.audit.forward.poll_interval_s
    while not stop.is_set():
        try:
            return forwarder.position(from_index).next_index
        except ForwardError as exc:
            _retry(exc, delay)
            stop.wait(delay)
            delay = min(delay * 2, settings.audit.forward.max_backoff_s)
    return None
