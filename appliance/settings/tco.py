"""``tco:``: what the in-house cluster costs, for ``appliance tco`` (docs/tco.md).

Read by the cost comparison only, never on the request path. Every figure a site must
state defaults to None; ``appliance tco`` names the missing ones instead of guessing.
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field, model_validator

from appliance.settings.base import Section

__all__ = ["TcoSettings"]


class TcoSettings(Section):
    """The in-house side of the cost comparison: hardware and its depreciation, power,
    utilisation, operations, and the cluster's measured throughput (the planner states
    memory and concurrency, not tokens per second)."""

    currency: str = Field(
        default="USD", pattern=r"^[A-Z]{3}$", description="ISO 4217 code of every price here"
    )
    nodes: int | None = Field(
        default=None, ge=1, description="GPU nodes in the cluster (--plan overrides it)"
    )
    gpus_per_node: int | None = Field(
        default=None, ge=1, description="GPUs per node (--plan overrides it)"
    )
    hardware_price_per_node: Decimal | None = Field(
        default=None, gt=0, description="Purchase price of one node, GPUs included, in currency"
    )
    hardware_price_per_gpu: Decimal | None = Field(
        default=None,
        gt=0,
        description="Purchase price per GPU, in currency (instead of hardware_price_per_node)",
    )
    depreciation_months: int | None = Field(
        default=None, ge=1, le=240, description="Months the hardware is written off over"
    )
    power_kw_per_node: Decimal | None = Field(
        default=None, gt=0, description="Average electrical draw of one node under load, in kW"
    )
    price_per_kwh: Decimal | None = Field(
        default=None, ge=0, description="Electricity price per kWh, in currency"
    )
    pue: Decimal | None = Field(
        default=None,
        ge=1,
        le=5,
        description="Power usage effectiveness of the site (1.0: no cooling overhead)",
    )
    utilisation: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="Share of the cluster's throughput that does paid-for work over a month",
    )
    operations_per_month: Decimal = Field(
        default=Decimal(0),
        ge=0,
        description="Other monthly cost: staff share, rack space, support, in currency",
    )
    prefill_tokens_per_s: float | None = Field(
        default=None,
        gt=0,
        description="Measured input (prefill) tokens per second of the whole cluster at full "
        "load (bench/engine_bench.py, vLLM's benchmark); the planner states none",
    )
    decode_tokens_per_s: float | None = Field(
        default=None,
        gt=0,
        description="Measured output (decode) tokens per second of the whole cluster at full "
        "load (bench/engine_bench.py, vLLM's benchmark); the planner states none",
    )

    @model_validator(mode="after")
    def _one_hardware_price(self) -> TcoSettings:
        if self.hardware_price_per_node is not None and self.hardware_price_per_gpu is not None:
            raise ValueError(
                "tco: give either hardware_price_per_node or hardware_price_per_gpu, not both"
            )
        return self
