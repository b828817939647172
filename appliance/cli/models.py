"""``appliance models prepare-dev|verify``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from appliance.cli.common import ConfigOption, console, settings_from
from appliance.modelstore import prepare_dev_model, verify_manifest

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


@app.command("verify")
def verify(
    directory: Annotated[Path, typer.Argument(help="Model directory with MANIFEST.sha256")],
) -> None:
    """Check every file of a model directory against its sha256 manifest."""
    with console.status("verifying") as status:
        entries = verify_manifest(directory, on_file=lambda name: status.update(f"hashing {name}"))
    console.print(f"{directory}: {len(entries)} files match the manifest")
