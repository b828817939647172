"""Reading site dictionaries from files: the one place in the package that does I/O.

Everything else in :mod:`appliance.egress` takes and returns values; the caller (the
gateway's lifespan, a CLI command) reads the files once at start-up and hands the
resulting :class:`SiteDictionary` objects to :func:`~appliance.egress.build_scanner`.
"""

from __future__ import annotations

from pathlib import Path

from appliance.egress.detectors.dictionary import SiteDictionary
from appliance.egress.levels import Classification
from appliance.errors import ConfigurationError

__all__ = ["load_dictionary"]


def load_dictionary(
    path: str | Path,
    *,
    name: str | None = None,
    level: Classification | str = Classification.CONFIDENTIAL,
    label: str = "TERM",
) -> SiteDictionary:
    """The dictionary in ``path`` (UTF-8, BOM tolerated, one term per line, ``#``
    comments), named ``dictionary.<file stem>`` unless ``name`` is given."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"dictionary {path}: cannot read ({exc})") from exc
    try:
        return SiteDictionary.parse(
            text,
            name=name or f"dictionary.{path.stem}",
            level=Classification.parse(level),
            label=label,
        )
    except ValueError as exc:
        raise ConfigurationError(f"dictionary {path}: {exc}") from None
