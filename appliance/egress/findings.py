"""Value types of a scan: one :class:`Finding` per sensitive span, the
:class:`ScanResult` of one text, and the :class:`ScanSummary` that audit records keep.

The matched text lives only in :class:`Finding` (hidden from ``repr``); summaries hold
detector names and counts, never values, so they are safe for logs and audit metadata.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from appliance.egress.levels import Classification

__all__ = ["Finding", "ScanResult", "ScanSummary"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One sensitive span: ``text == scanned[start:end]``.

    ``level`` is the highest level among the candidates merged into this finding;
    ``absorbed`` names the other detectors whose overlapping candidates it covers.
    """

    detector: str
    label: str
    start: int
    end: int
    level: Classification
    text: str = field(repr=False)
    absorbed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ScanSummary:
    """Classification and per-detector counts of one or more scanned texts."""

    classification: Classification = Classification.PUBLIC
    counts: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        # Sorted by name and read-only, so equal summaries serialise identically.
        counts = {name: self.counts[name] for name in sorted(self.counts) if self.counts[name]}
        object.__setattr__(self, "counts", MappingProxyType(counts))

    @classmethod
    def of(cls, findings: Iterable[Finding]) -> ScanSummary:
        found = tuple(findings)
        level = max((f.level for f in found), default=Classification.PUBLIC)
        return cls(level, Counter(f.detector for f in found))

    def merge(self, other: ScanSummary) -> ScanSummary:
        """The summary of both texts: the higher level, the summed counts."""
        counts = Counter(self.counts)
        counts.update(other.counts)
        return ScanSummary(max(self.classification, other.classification), counts)

    def to_audit(self) -> dict[str, object]:
        """JSON-ready metadata: ``{"classification": "confidential", "detectors":
        {"iban": 1}}``; names and counts only."""
        return {"classification": self.classification.label, "detectors": dict(self.counts)}


@dataclass(frozen=True, slots=True)
class ScanResult:
    """The findings of one text, ordered by position and never overlapping."""

    findings: tuple[Finding, ...] = ()

    @property
    def classification(self) -> Classification:
        return max((f.level for f in self.findings), default=Classification.PUBLIC)

    @property
    def counts(self) -> Mapping[str, int]:
        return self.summary().counts

    def summary(self) -> ScanSummary:
        return ScanSummary.of(self.findings)

    def at_least(self, level: Classification) -> tuple[Finding, ...]:
        """The findings at ``level`` or above."""
        return tuple(f for f in self.findings if f.level >= level)
