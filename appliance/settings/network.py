"""``network:``: what counts as "on the premises" (``appliance doctor``)."""

from __future__ import annotations

import ipaddress

from pydantic import Field, field_validator

from appliance.settings.base import Section

__all__ = ["NetworkSettings"]


class NetworkSettings(Section):
    """What counts as "on the premises" (``appliance doctor``)."""

    allowed_networks: list[str] = Field(
        default_factory=lambda: [
            "127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
            "fc00::/7", "fe80::/10",
        ],
        description="CIDRs every configured endpoint must resolve into",
    )  # fmt: skip

    @field_validator("allowed_networks")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)
        return value
