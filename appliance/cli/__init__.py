"""The ``appliance`` command line: thin commands over library functions."""

from __future__ import annotations

from appliance.cli.main import app, main

__all__ = ["app", "main"]
