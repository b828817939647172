"""gateway.workers reaches the gateway's appliance.yaml: auto by default (the CPUs the
container may use, docs/operations.md), or the number given."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from appliance.config import Settings
from tests.deploy.helm_render import base_values, merge, plan_values, render


def _gateway_settings(**gateway: Any) -> Settings:
    values = merge(merge(plan_values("dev-cpu"), base_values()), {"gateway": gateway})
    config_map = render(values).one("ConfigMap", "-config")
    return Settings(**yaml.safe_load(config_map["data"]["appliance.yaml"]))


def test_workers_default_to_auto() -> None:
    assert _gateway_settings().gateway.workers == "auto"


@pytest.mark.parametrize("workers", [1, 4])
def test_a_number_of_workers_is_passed_on(workers: int) -> None:
    assert _gateway_settings(workers=workers).gateway.workers == workers
