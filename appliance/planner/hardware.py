"""The accelerator catalog: memory, interconnect and FP8 support per device type.

Pure data. Memory is what the driver reports (``nvidia-smi``'s MiB), because that, not
the marketing figure, is what ``--gpu-memory-utilization`` is a fraction of.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["GPU_CATALOG", "GpuType", "gpu_type"]

_MIB = 1 << 20
_GIB = 1 << 30


@dataclass(frozen=True)
class GpuType:
    """One accelerator model as the planner sees it."""

    key: str
    name: str
    memory_mib: int
    vendor: Literal["nvidia", "amd", "cpu"]
    interconnect: str
    interconnect_gbps: int
    fp8: bool
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
        return self.key in {"h100", "h200", "h20", "h800"}


GPU_CATALOG: tuple[GpuType, ...] = (
    GpuType(
        key="h100", name="NVIDIA H100 SXM 80GB", memory_mib=81559, vendor="nvidia",
        interconnect="NVLink 4 (NVSwitch)", interconnect_gbps=900, fp8=True,
        note="81559 MiB per nvidia-smi (reference: ~79.6 GiB usable)",
    ),
    GpuType(
        key="h200", name="NVIDIA H200 141GB", memory_mib=143771, vendor="nvidia",
        interconnect="NVLink 4 (NVSwitch)", interconnect_gbps=900, fp8=True,
        note="143771 MiB per nvidia-smi [unverified MiB value, reference 6.2]",
    ),
    GpuType(
        key="h20", name="NVIDIA H20 96GB", memory_mib=97871, vendor="nvidia",
        interconnect="NVLink 4 (NVSwitch)", interconnect_gbps=900, fp8=True,
        note="96 GB HBM3 [MiB value unverified]; a 141 GB variant exists",
    ),
    GpuType(
        key="h800", name="NVIDIA H800 80GB", memory_mib=81559, vendor="nvidia",
        interconnect="NVLink (export-limited)", interconnect_gbps=400, fp8=True,
    ),
    GpuType(
        key="a100", name="NVIDIA A100 SXM 80GB", memory_mib=81920, vendor="nvidia",
        interconnect="NVLink 3 (NVSwitch)", interconnect_gbps=600, fp8=False,
        note="Ampere: no FP8 tensor cores; the planner sizes FP8 checkpoints as BF16",
    ),
    GpuType(
        key="l40s", name="NVIDIA L40S 48GB", memory_mib=46068, vendor="nvidia",
        interconnect="PCIe 4.0 (no NVLink)", interconnect_gbps=64, fp8=True,
        note="PCIe only: keep tensor parallelism small",
    ),
    GpuType(
        key="b200", name="NVIDIA B200 180GB", memory_mib=183359, vendor="nvidia",
        interconnect="NVLink 5 (NVSwitch)", interconnect_gbps=1800, fp8=True,
        note="[MiB value unverified]",
    ),
    GpuType(
        key="mi300x", name="AMD Instinct MI300X 192GB", memory_mib=196592, vendor="amd",
        interconnect="Infinity Fabric", interconnect_gbps=896, fp8=True,
        note="ROCm build of vLLM; AITER kernels",
    ),
    GpuType(
        key="cpu", name="CPU (vLLM-CPU rank)", memory_mib=4096, vendor="cpu",
        interconnect="shared memory", interconnect_gbps=0, fp8=False,
        note="one vLLM-CPU rank per 'GPU'; memory is its KV cache and weight budget",
    ),
)  # fmt: skip


def gpu_type(key: str) -> GpuType:
    """Look a device up by key (``h200``), case-insensitive; ValueError names the known ones."""
    wanted = key.strip().lower()
    for gpu in GPU_CATALOG:
        if gpu.key == wanted:
            return gpu
    known = ", ".join(gpu.key for gpu in GPU_CATALOG)
    raise ValueError(f"unknown GPU type {key!r}; known: {known}")
