"""LoRA adapters in the model store, beside their base model.

Layout: ``<store>/adapters/<base>/<name>/`` holds the PEFT files
(``adapter_config.json``, ``adapter_model.safetensors``), ``appliance-adapter.json``
(name, base, rank, teams) and a ``MANIFEST.sha256`` covering all of them, so a changed
team list fails verification like a changed weight. An import copies through
:func:`~appliance.modelstore.importer.import_model` (sha256 while copying, resumable,
progress), checks the copy, and renames the finished directory into place.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import shutil
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.adapters.shapes import (
    DEFAULT_MAX_ADAPTER_RANK,
    AdapterShape,
    check_adapter,
    check_base_name,
)
from appliance.errors import ManifestError
from appliance.modelstore.importer import ImportResult, ProgressCallback, import_model
from appliance.modelstore.manifest import (
    MANIFEST_NAME,
    format_manifest,
    parse_manifest,
    sha256_file,
    verify_manifest,
)

__all__ = [
    "ADAPTERS_DIR",
    "ADAPTER_CONFIG",
    "ADAPTER_WEIGHTS",
    "METADATA_NAME",
    "ImportedAdapter",
    "StoredAdapter",
    "adapters_root",
    "check_adapter_dir",
    "find_adapter",
    "import_adapter",
    "list_adapters",
    "read_safetensors_header",
    "remove_adapter",
    "verify_adapter",
]

ADAPTERS_DIR = "adapters"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
METADATA_NAME = "appliance-adapter.json"
_MAX_HEADER = 100 << 20  # safetensors' own limit
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_TEAM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@/-]{0,127}$")


@dataclass(frozen=True)
class StoredAdapter:
    name: str
    base: str
    rank: int
    teams: tuple[str, ...]
    target_modules: tuple[str, ...]
    size: int
    manifest_sha256: str
    path: Path

    @property
    def qualified_name(self) -> str:
        """How callers name it: ``<base>:<adapter>``."""
        return f"{self.base}:{self.name}"


@dataclass(frozen=True)
class ImportedAdapter:
    adapter: StoredAdapter
    shape: AdapterShape
    result: ImportResult


def adapters_root(store: Path) -> Path:
    return store / ADAPTERS_DIR


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ManifestError(f"{path.parent} has no {path.name} ({what})") from exc
    except (OSError, ValueError) as exc:
        raise ManifestError(f"cannot read {path} ({what}): {exc}") from exc
    if not isinstance(data, dict):
        raise ManifestError(f"{path} ({what}) is not a JSON object")
    return data


def read_safetensors_header(path: Path) -> tuple[dict[str, Any], int]:
    """The JSON header of a safetensors file (8-byte little-endian length, then JSON)
    and the byte length of the data after it. Reads only the header."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            prefix = handle.read(8)
            if len(prefix) < 8:
                raise ManifestError(f"{path.name} is too short to be a safetensors file")
            (length,) = struct.unpack("<Q", prefix)
            if length > min(_MAX_HEADER, size - 8):
                raise ManifestError(f"{path.name}: header length {length} exceeds the file")
            header = json.loads(handle.read(length).decode("utf-8"))
    except FileNotFoundError as exc:
        raise ManifestError(f"{path.parent} has no {path.name}") from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise ManifestError(f"{path.name}: the safetensors header is not JSON") from exc
    if not isinstance(header, dict):
        raise ManifestError(f"{path.name}: the safetensors header is not a JSON object")
    return header, size - 8 - length


def _base_dir(store: Path, base: str) -> Path:
    directory = store / base
    if not (directory / MANIFEST_NAME).is_file():
        raise ManifestError(
            f"base model {base!r} is not in the model store ({directory}); import it first"
        )
    return directory


def check_adapter_dir(
    directory: Path, base_dir: Path, *, max_rank: int, base_aliases: Iterable[str] = ()
) -> AdapterShape:
    """Check a PEFT adapter directory against a stored base model (name, rank, shapes)."""
    if not (directory / ADAPTER_WEIGHTS).is_file() and (directory / "adapter_model.bin").exists():
        raise ManifestError(
            "adapter_model.bin is a pickle, which the appliance does not load; save the "
            "adapter with safe_serialization=True (adapter_model.safetensors)"
        )
    adapter_config = _read_json(directory / ADAPTER_CONFIG, "the PEFT adapter config")
    base_config = _read_json(base_dir / "config.json", "the base model's config")
    declared = str(adapter_config.get("base_model_name_or_path") or "")
    check_base_name(
        declared, [base_dir.name, str(base_config.get("_name_or_path") or ""), *base_aliases]
    )
    header, data_bytes = read_safetensors_header(directory / ADAPTER_WEIGHTS)
    return check_adapter(adapter_config, header, data_bytes, base_config, max_rank=max_rank)


def _validate_names(name: str, teams: Sequence[str]) -> tuple[str, ...]:
    if not _NAME.match(name):
        raise ManifestError(
            f"adapter name {name!r}: use lower-case letters, digits, '.', '_' or '-' "
            "(at most 64, no ':')"
        )
    cleaned = tuple(dict.fromkeys(team.strip() for team in teams if team.strip()))
    if not cleaned:
        raise ManifestError("name at least one team (--teams t1,t2): adapters serve their teams")
    for team in cleaned:
        if not _TEAM.match(team):
            raise ManifestError(f"team {team!r} is not a valid team name")
    return cleaned


def _stored(directory: Path) -> StoredAdapter:
    meta = _read_json(directory / METADATA_NAME, "the adapter's metadata")
    manifest = directory / MANIFEST_NAME
    try:
        manifest_sha256 = hashlib.sha256(manifest.read_bytes()).hexdigest()
    except OSError as exc:
        raise ManifestError(f"{directory} has no readable {MANIFEST_NAME}") from exc
    files = [path for path in directory.rglob("*") if path.is_file()]
    try:
        return StoredAdapter(
            name=str(meta["name"]),
            base=str(meta["base"]),
            rank=int(meta["rank"]),
            teams=tuple(str(team) for team in meta["teams"]),
            target_modules=tuple(str(module) for module in meta.get("target_modules", ())),
            size=sum(path.stat().st_size for path in files),
            manifest_sha256=manifest_sha256,
            path=directory,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ManifestError(f"{directory / METADATA_NAME} is malformed: {exc}") from exc


def import_adapter(
    source: Path,
    store: Path,
    name: str,
    *,
    base: str,
    teams: Sequence[str],
    max_rank: int = DEFAULT_MAX_ADAPTER_RANK,
    base_aliases: Iterable[str] = (),
    trust_source: bool = False,
    link: bool = False,
    on_progress: ProgressCallback = lambda _name, _done, _total: None,
) -> ImportedAdapter:
    """Check ``source`` against the stored ``base``, copy it into the store with a
    manifest, check the copy again and move it into place in one rename."""
    team_list = _validate_names(name, teams)
    base_dir = _base_dir(store, base)
    aliases = tuple(base_aliases)
    check_adapter_dir(source, base_dir, max_rank=max_rank, base_aliases=aliases)  # fail early
    parent = adapters_root(store) / base
    destination = parent / name
    if destination.exists():
        raise ManifestError(f"adapter {base}:{name} exists; remove it first to replace it")
    staging = parent / f".staging-{name}"
    if staging.exists():
        shutil.rmtree(staging)  # a finished copy from a run that stopped before the rename
    result = import_model(
        source, staging, trust_source=trust_source, link=link, on_progress=on_progress
    )
    try:
        shape = check_adapter_dir(staging, base_dir, max_rank=max_rank, base_aliases=aliases)
        metadata = {
            "name": name, "base": base, "rank": shape.rank, "teams": list(team_list),
            "target_modules": list(shape.target_modules), "lora_alpha": shape.lora_alpha,
            "base_model_name_or_path": shape.base_model_name_or_path,
        }  # fmt: skip
        (staging / METADATA_NAME).write_text(
            json.dumps(metadata, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        entries = parse_manifest((staging / MANIFEST_NAME).read_text(encoding="utf-8"))
        entries[METADATA_NAME] = sha256_file(staging / METADATA_NAME)
        (staging / MANIFEST_NAME).write_text(format_manifest(entries), encoding="utf-8")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    staging.rename(destination)
    return ImportedAdapter(adapter=_stored(destination), shape=shape, result=result)


def list_adapters(store: Path, base: str | None = None) -> list[StoredAdapter]:
    """Every imported adapter (or those of ``base``), sorted by base and name."""
    root = adapters_root(store)
    pattern = f"{base}/*/{METADATA_NAME}" if base else f"*/*/{METADATA_NAME}"
    return [
        _stored(meta.parent)
        for meta in sorted(root.glob(pattern))
        if not meta.parent.name.startswith(".") and (meta.parent / MANIFEST_NAME).is_file()
    ]


def find_adapter(store: Path, name: str, base: str | None = None) -> StoredAdapter:
    """One adapter by name, ``base:name`` or name plus ``base``."""
    if ":" in name and base is None:
        base, name = name.split(":", 1)
    matches = [adapter for adapter in list_adapters(store, base) if adapter.name == name]
    if not matches:
        where = f" for base {base}" if base else ""
        raise ManifestError(f"no adapter {name!r}{where} in the store; see `adapters list`")
    if len(matches) > 1:
        bases = ", ".join(adapter.base for adapter in matches)
        raise ManifestError(f"adapter {name!r} exists for several bases ({bases}); use --base")
    return matches[0]


def remove_adapter(store: Path, name: str, base: str | None = None) -> StoredAdapter:
    """Take the adapter out of the store: one rename (gone for engines started from
    now on), then delete the files."""
    adapter = find_adapter(store, name, base)
    doomed = adapter.path.with_name(f".removing-{adapter.name}")
    if doomed.exists():
        shutil.rmtree(doomed)
    adapter.path.rename(doomed)
    shutil.rmtree(doomed)
    return adapter


def verify_adapter(adapter: StoredAdapter) -> dict[str, str]:
    """Every file against the adapter's manifest, and the manifest against the digest
    read when it was listed; raises ManifestError."""
    entries = verify_manifest(adapter.path)
    current = hashlib.sha256((adapter.path / MANIFEST_NAME).read_bytes()).hexdigest()
    if not hmac.compare_digest(current, adapter.manifest_sha256):
        raise ManifestError(f"{adapter.path}: {MANIFEST_NAME} changed since it was listed")
    for required in (ADAPTER_CONFIG, ADAPTER_WEIGHTS, METADATA_NAME):
        if required not in entries:
            raise ManifestError(f"{adapter.path}: {required} is not in the manifest")
    return entries
