"""gateway.workers: auto follows the usable cores but stays at 1 where shared state
would split (limits counted in memory) or only queue (SQLite); an explicit count that
would multiply the limits is refused, naming the setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from appliance.config import Settings, load_settings
from appliance.errors import ConfigurationError
from appliance.gateway.worker_count import cgroup_cpu_quota, plan_workers, usable_cpus

POSTGRES = {"url": "postgresql+psycopg://gw@db/appliance"}
LIMITS = {"roles": {"appliance-user": {"rpm": 60}}}
REDIS_LIMITS = {**LIMITS, "store": "redis", "redis_url": "redis://redis:6379/0"}


def settings(**data: Any) -> Settings:
    return Settings.model_validate(data)


def test_auto_is_the_usable_cores_on_postgresql() -> None:
    plan = plan_workers(settings(database=POSTGRES), cpus=6)
    assert plan.count == 6 and "usable cores" in plan.reason


def test_auto_with_redis_limits_uses_every_core() -> None:
    assert plan_workers(settings(database=POSTGRES, limits=REDIS_LIMITS), cpus=4).count == 4


def test_auto_is_one_with_limits_in_memory_and_says_why() -> None:
    plan = plan_workers(settings(database=POSTGRES, limits=LIMITS), cpus=8)
    assert plan.count == 1 and "limits.store" in plan.reason


def test_auto_is_one_on_sqlite_the_embedded_default(tmp_path: Path) -> None:
    plan = plan_workers(settings(data_dir=str(tmp_path)), cpus=8)
    assert plan.count == 1 and "SQLite" in plan.reason


def test_auto_uses_every_core_on_sqlite_when_the_audit_is_spooled(tmp_path: Path) -> None:
    spooled = settings(data_dir=str(tmp_path), audit={"spool": {"enabled": True}})
    plan = plan_workers(spooled, cpus=4)
    assert plan.count == 4 and "spooled" in plan.reason
    limited = settings(data_dir=str(tmp_path), audit={"spool": {"enabled": True}}, limits=LIMITS)
    assert plan_workers(limited, cpus=4).count == 1  # limits in memory still hold it back


def test_memory_store_without_limits_does_not_hold_workers_back() -> None:
    assert plan_workers(settings(database=POSTGRES), cpus=3).count == 3


def test_an_explicit_count_with_limits_in_memory_is_refused_naming_the_setting() -> None:
    with pytest.raises(ValueError, match=r"gateway\.workers: 2 needs limits\.store: redis"):
        settings(database=POSTGRES, limits=LIMITS, gateway={"workers": 2})


@pytest.mark.parametrize("workers", [1, 3])
def test_an_explicit_count_is_kept(workers: int) -> None:
    given = settings(database=POSTGRES, limits=REDIS_LIMITS, gateway={"workers": workers})
    assert plan_workers(given, cpus=8).count == workers
    one = settings(database=POSTGRES, limits=LIMITS, gateway={"workers": 1})
    assert plan_workers(one, cpus=8).count == 1


def test_workers_below_one_are_invalid() -> None:
    with pytest.raises(ValueError, match=r"gateway\.workers"):
        settings(gateway={"workers": 0})


@pytest.mark.parametrize(
    ("line", "cpus"),
    [("200000 100000", 2.0), ("150000 100000", 1.5), ("max 100000", None), ("junk", None)],
)
def test_cgroup_cpu_quota(line: str, cpus: float | None) -> None:
    assert cgroup_cpu_quota(line) == cpus


def test_usable_cpus_is_capped_by_the_cgroup_quota(tmp_path: Path) -> None:
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("100000 100000\n")
    assert usable_cpus(cpu_max) == 1
    cpu_max.write_text("max 100000\n")
    assert usable_cpus(cpu_max) >= 1
    assert usable_cpus(tmp_path / "absent") == usable_cpus(cpu_max)


def test_a_config_file_asking_for_that_is_refused_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "appliance.yaml"
    config.write_text(
        "gateway: {workers: 4}\nlimits: {teams: {'*': {tpm: 1000}}}\n", encoding="utf-8"
    )
    with pytest.raises(ConfigurationError, match=r"limits\.store") as refused:
        load_settings(config)
    assert "gateway.workers: 4 needs limits.store: redis" in str(refused.value)
