"""``appliance adapters import|list|verify|remove``: per-team LoRA adapters."""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from appliance.adapters import (
    DEFAULT_MAX_ADAPTER_RANK,
    find_adapter,
    import_adapter,
    list_adapters,
    remove_adapter,
    verify_adapter,
)
from appliance.cli.common import ConfigOption, console, settings_from
from appliance.errors import ConfigurationError, ManifestError
from appliance.planner.profiles import find_profile

__all__ = ["app"]

app = typer.Typer(
    help="Per-team LoRA adapters, stored with a sha256 manifest beside their base model.",
    no_args_is_help=True,
)

BaseOption = Annotated[
    str | None,
    typer.Option("--base", help="Base model name in the store (when NAME is ambiguous)"),
]
_SOURCE_HELP = "PEFT adapter directory (adapter_config.json + adapter_model.safetensors)"
NameArgument = Annotated[str, typer.Argument(help="Adapter name, or MODEL:ADAPTER")]


def _size(value: int) -> str:
    return f"{value / (1 << 20):,.1f} MiB" if value >= 1 << 20 else f"{value / 1024:,.1f} KiB"


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
        TransferSpeedColumn(), TimeRemainingColumn(), console=console,
    )  # fmt: skip


def _profile_sources(base: str) -> list[str]:
    """The base's hub id from its profile (``source: Org/Name (via ...)``), if any."""
    try:
        profile = find_profile(base)
    except ConfigurationError:
        return []
    return [profile.name, profile.source.split()[0]] if profile.source else [profile.name]


@app.command("import")
def import_(
    source: Annotated[Path, typer.Argument(help=_SOURCE_HELP)],
    name: Annotated[str, typer.Argument(help="Adapter name; callers use MODEL:NAME")],
    base: Annotated[str, typer.Option("--base", help="Base model name in the model store")],
    teams: Annotated[
        str, typer.Option("--teams", help="Comma-separated teams that may use it (t1,t2)")
    ],
    max_rank: Annotated[
        int, typer.Option("--max-rank", min=1, help="Refuse adapters with a larger rank r")
    ] = DEFAULT_MAX_ADAPTER_RANK,
    trust_source: Annotated[
        bool, typer.Option("--trust-source", help="Record a new manifest from the source")
    ] = False,
    link: Annotated[
        bool, typer.Option("--link", help="Hard-link instead of copying (same file system)")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Check an adapter against its base (name, rank, every tensor's shape), then copy
    it into the store with a sha256 manifest; resumable.

    The expected digests come from a MANIFEST.sha256 in SOURCE (sha256sum on the
    training host), or with --trust-source from the files as they are now.
    """
    settings = settings_from(config)
    with _progress() as progress:
        task = progress.add_task(f"importing {name}", total=None)

        def on_progress(file: str, done: int, total: int) -> None:
            progress.update(task, completed=done, total=total, description=file[-40:])

        imported = import_adapter(
            source, settings.model_store, name, base=base, teams=teams.split(","),
            max_rank=max_rank, base_aliases=_profile_sources(base),
            trust_source=trust_source, link=link, on_progress=on_progress,
        )  # fmt: skip
    adapter = imported.adapter
    console.print(
        f"imported adapter {adapter.qualified_name} (rank {adapter.rank}, "
        f"{imported.shape.tensors} tensors on {', '.join(adapter.target_modules)}) for "
        f"teams {', '.join(adapter.teams)}; checked against the "
        f"{imported.result.manifest_source}; manifest sha256 {adapter.manifest_sha256}",
        highlight=False,
    )


@app.command("list")
def list_(
    base: Annotated[str | None, typer.Option("--base", help="Only this base model")] = None,
    config: ConfigOption = None,
) -> None:
    """The imported adapters: name, base, rank, teams, size and manifest hash (the
    first 12 hex digits of the sha256 of MANIFEST.sha256; `verify` prints all)."""
    settings = settings_from(config)
    adapters = list_adapters(settings.model_store, base)
    if not adapters:
        console.print("no adapters in the store; add one with `appliance adapters import`")
        return
    table = Table()
    for header in ("name", "base", "rank", "teams", "size", "manifest sha256"):
        table.add_column(
            header, no_wrap=header != "teams", min_width=12 if header == "teams" else None,
            justify="right" if header in ("rank", "size") else "left",
        )  # fmt: skip
    for adapter in adapters:
        table.add_row(
            adapter.name, adapter.base, str(adapter.rank), ", ".join(adapter.teams),
            _size(adapter.size), adapter.manifest_sha256[:12],
        )  # fmt: skip
    console.print(table)


@app.command("verify")
def verify(
    name: NameArgument,
    base: BaseOption = None,
    expect_sha256: Annotated[
        str | None,
        typer.Option(
            "--expect-sha256",
            help="Also require this manifest sha256 (the one `adapters list` printed when "
            "the adapter was approved): a re-imported or edited adapter fails",
        ),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Check every file of an adapter (teams included) against its sha256 manifest."""
    settings = settings_from(config)
    adapter = find_adapter(settings.model_store, name, base)
    entries = verify_adapter(adapter)
    if expect_sha256 is not None and not hmac.compare_digest(
        adapter.manifest_sha256, expect_sha256.strip().lower()
    ):
        raise ManifestError(
            f"{adapter.qualified_name}: manifest sha256 {adapter.manifest_sha256} is not the "
            f"expected {expect_sha256}: the adapter changed since it was approved"
        )
    console.print(
        f"{adapter.qualified_name}: {len(entries)} files match the manifest "
        f"(sha256 {adapter.manifest_sha256})",
        highlight=False,
    )


@app.command("remove")
def remove(name: NameArgument, base: BaseOption = None, config: ConfigOption = None) -> None:
    """Delete an adapter from the store (engines started afterwards no longer load it)."""
    settings = settings_from(config)
    adapter = remove_adapter(settings.model_store, name, base)
    console.print(f"removed adapter {adapter.qualified_name}", highlight=False)
