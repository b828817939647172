"""``appliance bundle keygen|create|verify|install``: the signed release bundle that
carries the appliance across an air gap (docs/airgap.md).

Thin: each command parses, calls :mod:`appliance.release`, prints.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from appliance.cli.common import console
from appliance.errors import BundleError
from appliance.release.create import BundleRequest, create_bundle
from appliance.release.install import InstallRequest, install_bundle, verify
from appliance.release.manifest import DEFAULT_KEY_NAME, generate_release_key, load_release_signer
from appliance.release.release_verifier import MANIFEST_NAME, parse_listing
from appliance.release.wheelhouse import INSTALL_SETS, Target

__all__ = ["app"]

app = typer.Typer(
    help="The signed release bundle: make it on a connected host, verify and install it "
    "on the air-gapped side (docs/airgap.md).",
    no_args_is_help=True,
)

KeyOption = Annotated[
    str,
    typer.Option(
        "--key",
        help="Release public key (release.pub, or its text), obtained apart from the bundle",
    ),
]


def _step(message: str) -> None:
    console.print(f"[bold]==>[/bold] {message}", highlight=False)


@contextmanager
def _hashing(total: int) -> Iterator[Progress]:
    with Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
        console=console, transient=True,
    ) as progress:  # fmt: skip
        progress.add_task("hashing", total=total or None)
        yield progress


def _bytes_listed(bundle: Path) -> int:
    """The size the manifest lists (for the progress bar; checked later, not trusted)."""
    try:
        body = (bundle / MANIFEST_NAME).read_text(encoding="utf-8").rpartition("\n\n")[0]
        return sum(size for _digest, size in parse_listing(body + "\n").values())
    except Exception:  # the verifier reports what is wrong; the bar just has no total
        return 0


def _key_text(value: str) -> str:
    path = Path(value)
    if path.is_file():
        return path.read_text(encoding="utf-8").strip()
    if "+" not in value:
        raise BundleError(f"--key {value}: no such file, and not a key")
    return value


@app.command("keygen")
def keygen(
    out: Annotated[Path, typer.Argument(help="Folder for release.key and release.pub")],
    name: Annotated[str, typer.Option("--name", help="Key name")] = DEFAULT_KEY_NAME,
) -> None:
    """Make the Ed25519 release key pair: release.key (private, 0600) and release.pub."""
    private, public = generate_release_key(out, name)
    console.print(f"wrote {private} (keep it offline) and {public} (give it to sites)")
    console.print(public.read_text(encoding="utf-8").strip(), highlight=False)


@app.command("create")
def create(
    out: Annotated[Path, typer.Argument(help="New (or empty) folder for the bundle")],
    signing_key: Annotated[
        Path, typer.Option("--signing-key", help="release.key from `bundle keygen`")
    ],
    sets: Annotated[
        list[str] | None,
        typer.Option("--set", help=f"Install sets to carry: {', '.join(INSTALL_SETS)} (repeat)"),
    ] = None,
    source: Annotated[
        Path, typer.Option("--source", help="Source checkout (chart, Ansible, package)")
    ] = Path("."),
    images: Annotated[
        Path | None,
        typer.Option("--images", help="Folder with OCI archives and images.json (make image)"),
    ] = None,
    with_weights: Annotated[
        list[Path] | None,
        typer.Option("--with-weights", help="Model weight folders to carry (repeat)"),
    ] = None,
    wheelhouse: Annotated[
        Path | None, typer.Option("--wheelhouse", help="Reuse a built wheelhouse")
    ] = None,
    python_version: Annotated[
        str | None, typer.Option("--python-version", help="Target Python (default: this one)")
    ] = None,
    platform: Annotated[
        str | None,
        typer.Option("--platform", help="Target platform, e.g. manylinux_2_31_aarch64"),
    ] = None,
    sbom: Annotated[bool, typer.Option("--sbom/--no-sbom", help="CycloneDX SBOMs")] = True,
) -> None:
    """Collect wheelhouse, images, chart, Ansible, model manifests and SBOMs; sign it."""
    target = (
        Target(platform=platform) if python_version is None else Target(python_version, platform)
    )
    request = BundleRequest(
        out=out, source=source.resolve(), signer=load_release_signer(signing_key),
        sets=tuple(sets or ("gateway", "cpu", "gpu")), target=target, images=images,
        weights=tuple(with_weights or ()), wheelhouse=wheelhouse, sbom=sbom,
    )  # fmt: skip
    info = create_bundle(request, step=_step)
    console.print(
        f"bundle {out}: {info['files']} files, {int(str(info['bytes'])) / 2**20:.1f} MiB, "
        f"sets {', '.join(request.sets)}, for Python {info['python']} {info['platform']}; "
        f"MANIFEST signed by {request.signer.name}"
    )


@app.command("verify")
def verify_command(
    bundle: Annotated[Path, typer.Argument(help="The bundle folder")], key: KeyOption
) -> None:
    """Check the signature and every file; name the first that is missing, altered or
    unlisted. (verify_bundle.py in the bundle does the same with Python alone.)"""
    with _hashing(_bytes_listed(bundle)) as progress:
        task = progress.task_ids[0]
        info = verify(
            bundle, _key_text(key), lambda _p, done: progress.update(task, completed=done)
        )
    sets = info.get("sets")
    carried = ", ".join(str(name) for name in sets) if isinstance(sets, list) else "?"
    console.print(
        f"OK: bundle {info['version']} for Python {info['python']} {info['platform']}, "
        f"sets {carried}: signature and every file verified"
    )


@app.command("install")
def install(
    bundle: Annotated[Path, typer.Argument(help="The bundle folder")],
    key: KeyOption,
    install_set: Annotated[
        str,
        typer.Option(
            "--set", help="What this host runs: gateway, cpu, gpu or deploy (the admin host)"
        ),
    ] = "gateway",
    prefix: Annotated[
        Path,
        typer.Option("--prefix", help="Venvs go to PREFIX/venvs, PREFIX/venv links the live one"),
    ] = Path("/opt/appliance"),
    python: Annotated[
        Path | None, typer.Option("--python", help="Python for the venv (default: this one)")
    ] = None,
    registry: Annotated[
        str | None, typer.Option("--registry", help="Push the images to this registry (skopeo)")
    ] = None,
    load_images: Annotated[
        bool, typer.Option("--load-images", help="Load the images into podman's local store")
    ] = False,
) -> None:
    """Verify, then install from the bundle only: the wheelhouse into a new venv
    (switched in when complete), the images by digest. Prints what Helm and Ansible need."""
    request = InstallRequest(
        bundle=bundle.resolve(), key_text=_key_text(key), prefix=prefix.resolve(),
        install_set=install_set, registry=registry, load_images=load_images,
        **({"python": python} if python is not None else {}),
    )  # fmt: skip
    with _hashing(_bytes_listed(bundle)) as progress:
        task = progress.task_ids[0]
        result = install_bundle(
            request, step=_step, progress=lambda _p, done: progress.update(task, completed=done)
        )
    console.print(f"installed: {result.venv}\nlive venv:  {result.link} -> {result.venv}")
    values = {
        # Inventory variable for `make deploy`: the hosts install from this wheelhouse.
        "ansible": {"appliance_wheelhouse": str(request.bundle / "wheelhouse")},
        # For `helm install`: `appliance plan -f helm-values --bundle BUNDLE` writes them.
        "images": result.images,
    }
    console.print(json.dumps(values, indent=2), highlight=False)
