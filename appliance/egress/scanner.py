"""The scanner: runs every detector over a text, applies the configured levels, and
resolves overlapping candidates into non-overlapping findings.

Overlaps, deterministically: candidates that overlap (transitively) form one cluster;
the cluster becomes one finding covering the union of their spans, named after the
longest candidate (ties: the higher level, then the earlier start, then the detector
name), at the highest level in the cluster. So a code name inside an e-mail address is
one ``email`` finding at the code name's level, and no detected character is left out
of a placeholder.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from appliance.egress.detectors.base import Detector
from appliance.egress.findings import Finding, ScanResult
from appliance.egress.levels import Classification

__all__ = ["Candidate", "Scanner", "resolve_overlaps"]

_LABEL = re.compile(r"[A-Z][A-Z0-9_]{0,31}")


@dataclass(frozen=True, slots=True)
class Candidate:
    """A detector's raw span before overlap resolution."""

    detector: str
    label: str
    start: int
    end: int
    level: Classification

    @property
    def length(self) -> int:
        return self.end - self.start


def _winner_key(c: Candidate) -> tuple[int, int, int, str]:
    return (-c.length, -int(c.level), c.start, c.detector)


def resolve_overlaps(text: str, candidates: Iterable[Candidate]) -> tuple[Finding, ...]:
    """Non-overlapping findings, in text order, from possibly overlapping candidates."""
    ordered = sorted((c for c in candidates if c.end > c.start), key=lambda c: (c.start, -c.end))
    findings: list[Finding] = []
    cluster: list[Candidate] = []
    cluster_end = -1
    for candidate in ordered:
        if cluster and candidate.start >= cluster_end:
            findings.append(_merge(text, cluster, cluster_end))
            cluster = []
        cluster.append(candidate)
        cluster_end = max(cluster_end, candidate.end)
    if cluster:
        findings.append(_merge(text, cluster, cluster_end))
    return tuple(findings)


def _merge(text: str, cluster: list[Candidate], end: int) -> Finding:
    winner = min(cluster, key=_winner_key)
    start = cluster[0].start
    return Finding(
        detector=winner.detector,
        label=winner.label,
        start=start,
        end=end,
        level=max(c.level for c in cluster),
        text=text[start:end],
        absorbed=tuple(sorted({c.detector for c in cluster} - {winner.detector})),
    )


@dataclass(frozen=True, slots=True)
class Scanner:
    """Detectors plus level overrides (detector name -> level). Immutable and pure:
    build one per configuration and share it across requests."""

    detectors: tuple[Detector, ...]
    levels: Mapping[str, Classification] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        names = [d.name for d in self.detectors]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"detector names used twice: {', '.join(duplicates)}")
        unknown = sorted(set(self.levels) - set(names))
        if unknown:
            raise ValueError(f"levels given for unknown detectors: {', '.join(unknown)}")
        bad = sorted(d.label for d in self.detectors if not _LABEL.fullmatch(d.label))
        if bad:
            raise ValueError(f"placeholder labels must match [A-Z][A-Z0-9_]{{0,31}}: {bad}")
        object.__setattr__(self, "levels", MappingProxyType(dict(self.levels)))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.detectors)

    def level_of(self, detector: Detector) -> Classification:
        return self.levels.get(detector.name, detector.level)

    def candidates(self, text: str) -> list[Candidate]:
        """Every detector's validated spans, overlapping ones included."""
        found: list[Candidate] = []
        for detector in self.detectors:
            level = self.level_of(detector)
            found.extend(
                Candidate(detector.name, detector.label, start, end, level)
                for start, end in detector.find(text)
            )
        return found

    def scan(self, text: str) -> ScanResult:
        return ScanResult(resolve_overlaps(text, self.candidates(text)))
