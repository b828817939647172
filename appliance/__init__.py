"""Sovereign inference appliance: open models on your own GPUs behind a trust layer."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
