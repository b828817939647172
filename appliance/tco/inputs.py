"""What ``tco:`` states, as the cost comparison's inputs: which keys are missing, the
cluster's hardware and its measured throughput. Shared by ``appliance tco`` and the
console's chart, so both refuse and assume the same things. Pure: settings in, values
out."""

from __future__ import annotations

from decimal import Decimal

from appliance.errors import ConfigurationError
from appliance.settings.tco import TcoSettings
from appliance.tco.costs import Hardware, Throughput, missing_settings

__all__ = ["configured_hardware", "missing_inputs", "throughput_of"]

_THROUGHPUT_KEYS = ("prefill_tokens_per_s", "decode_tokens_per_s")


def throughput_of(tco: TcoSettings) -> Throughput | None:
    """The site's measured throughput; None unless both rates are stated."""
    if tco.prefill_tokens_per_s is None or tco.decode_tokens_per_s is None:
        return None
    return Throughput(
        prefill_tokens_per_s=Decimal(str(tco.prefill_tokens_per_s)),
        decode_tokens_per_s=Decimal(str(tco.decode_tokens_per_s)),
        source="appliance.yaml (tco.prefill_tokens_per_s, tco.decode_tokens_per_s: measured "
        "by the site; the planner states no throughput)",
    )


def missing_inputs(tco: TcoSettings, *, hardware_known: bool) -> list[str]:
    """:func:`~appliance.tco.costs.missing_settings`, plus the half of a throughput pair
    left out (one rate alone would silently drop the per-million figures) and the
    utilisation the rates need."""
    missing = missing_settings(tco, hardware_known=hardware_known)
    stated = {key: getattr(tco, key) for key in _THROUGHPUT_KEYS}
    if any(value is not None for value in stated.values()):
        missing += [f"tco.{key}" for key, value in stated.items() if value is None]
    if throughput_of(tco) is not None and tco.utilisation is None:
        missing.append("tco.utilisation")
    return missing


def configured_hardware(tco: TcoSettings) -> Hardware:
    """Nodes and GPUs as ``appliance.yaml`` states them (a plan file may say otherwise)."""
    if tco.nodes is None:  # reported by missing_inputs first
        raise ConfigurationError("tco.nodes is not set (or give --plan)")
    return Hardware(nodes=tco.nodes, gpus_per_node=tco.gpus_per_node, source="appliance.yaml")
