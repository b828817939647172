"""The process environment, read in one place of the CLI (the I/O shell) and passed
down: the engines start from it (appliance/engine never reads ``os.environ``).

It belongs beside ``appliance.config``'s own reading of ``APPLIANCE_*``; it lives here
while the settings modules are being reorganised."""

from __future__ import annotations

import os

__all__ = ["process_environment"]


def process_environment() -> dict[str, str]:
    """A copy of this process's environment (PATH, locale, CUDA_VISIBLE_DEVICES ...):
    the base an engine's environment is built on."""
    return dict(os.environ)
