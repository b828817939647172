"""Offline content scanning and reversible pseudonymisation (issue #17, the library half).

Pure: no I/O except :func:`load_dictionary`, no clock, no settings object. The gateway
builds one :class:`Scanner` from configuration at start-up, then per request::

    result = pseudonymise_messages(body["messages"], scanner)
    result.summary.classification      # highest level found; decides where it may go
    result.summary.to_audit()          # detector names and counts, never values
    send(result.value)                 # placeholders instead of values
    answer = reidentify(text, result.mapping)   # or StreamingReidentifier per choice

The gateway uses it for external providers: appliance.gateway.egress_call, docs/egress.md.
"""

from __future__ import annotations

from appliance.egress.defaults import (
    DEFAULT_LEVELS,
    ScannerConfig,
    build_scanner,
    builtin_detectors,
)
from appliance.egress.detectors import (
    DEFAULT_NATIONAL_IDS,
    Detector,
    NationalIdRegistry,
    NationalIdSpec,
    SiteDictionary,
)
from appliance.egress.findings import Finding, ScanResult, ScanSummary
from appliance.egress.levels import Classification
from appliance.egress.placeholders import PlaceholderMap
from appliance.egress.pseudonymise import (
    Pseudonymised,
    Pseudonymiser,
    pseudonymise_messages,
    pseudonymise_text,
)
from appliance.egress.reidentify import StreamingReidentifier, reidentify
from appliance.egress.scanner import Scanner
from appliance.egress.sitefiles import load_dictionary

__all__ = [
    "DEFAULT_LEVELS",
    "DEFAULT_NATIONAL_IDS",
    "Classification",
    "Detector",
    "Finding",
    "NationalIdRegistry",
    "NationalIdSpec",
    "PlaceholderMap",
    "Pseudonymised",
    "Pseudonymiser",
    "ScanResult",
    "ScanSummary",
    "Scanner",
    "ScannerConfig",
    "SiteDictionary",
    "StreamingReidentifier",
    "build_scanner",
    "builtin_detectors",
    "load_dictionary",
    "pseudonymise_messages",
    "pseudonymise_text",
    "reidentify",
]
