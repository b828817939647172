"""``ansible/site.yml``'s play order: the pre-flight checks first, then the outbound
firewall, before any play that installs or copies anything."""

from __future__ import annotations

import yaml

from tests.deploy.ansible_harness import ANSIBLE_DIR

INSTALL_ROLES = {
    "appliance_model_store",
    "appliance_database",
    "appliance_engine",
    "appliance_gateway",
    "appliance_identity",
    "appliance_observability",
}


def _roles(play: dict) -> set[str]:
    """Roles a play runs whole (``roles:``), not a single task file of one."""
    return {r["role"] if isinstance(r, dict) else r for r in play.get("roles", [])}


def _plays() -> list[dict]:
    return yaml.safe_load((ANSIBLE_DIR / "site.yml").read_text(encoding="utf-8"))


def test_egress_lockdown_runs_before_any_install_step():
    plays = _plays()
    egress = [i for i, play in enumerate(plays) if "appliance_egress_lockdown" in _roles(play)]
    installs = [i for i, play in enumerate(plays) if _roles(play) & INSTALL_ROLES]
    assert len(egress) == 1 and installs
    assert egress[0] < min(installs), [play["name"] for play in plays]
    # Nothing before it but pre-flight checks.
    assert all(_roles(play) <= {"appliance_preflight"} for play in plays[: egress[0]])


def test_egress_lockdown_covers_every_host_that_installs():
    plays = _plays()
    (egress,) = [play for play in plays if "appliance_egress_lockdown" in _roles(play)]
    covered = set(egress["hosts"].split(":"))
    for play in plays:
        if _roles(play) & (INSTALL_ROLES - {"appliance_identity"}):
            assert set(play["hosts"].split(":")) <= covered, play["name"]
