"""external_providers (issue #17) in the egress role's nftables table: on the gateway
hosts only, the gateway's user alone reaches each provider's CIDRs on its base_url's port
(443 unless named) or its egress proxy; with none declared the table is byte for byte
what it was. The gateway role refuses a credential that names a Kubernetes Secret."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from appliance.config import Settings
from tests.deploy.ansible_harness import (
    ANSIBLE_DIR,
    ansible_available,
    local_inventory,
    run_playbook,
)

pytestmark = pytest.mark.skipif(not ansible_available(), reason="ansible-core not installed")

PLAYBOOK = """\
- name: Egress
  hosts: all
  gather_facts: true
  gather_subset: [min]
  roles:
    - role: appliance_egress_lockdown
"""

OPENAI: dict[str, Any] = {
    "name": "openai",
    "base_url": "https://api.openai.com/v1",
    "credential": {"secret_file": "/etc/appliance/secrets/openai.key"},
    "max_classification": "internal",
    "teams": ["research"],
    "models": ["gpt-4.1@openai"],
    "price_input_per_million": 2,
    "price_output_per_million": 8,
    "monthly_budget": {"research": 500},
    "egress": {"cidrs": ["162.159.140.0/24", "2606:4700::/32"]},
}
AZURE: dict[str, Any] = {
    **OPENAI,
    "name": "azure",
    "base_url": "https://contoso.openai.azure.com/openai/v1",
    "models": ["gpt-4.1@azure"],
    "egress": {"proxy_url": "http://proxy.corp.internal:3128", "proxy_cidrs": ["10.9.0.10/32"]},
}
PARTNER: dict[str, Any] = {
    **OPENAI,
    "name": "partner",
    "base_url": "https://llm.partner.example:8443/v1",
    "models": ["llama-4@partner"],
    "egress": {"cidrs": ["203.0.113.0/24"]},
}
# A user that exists on the test machine: nft resolves the name when it checks the rules.
USER = "nobody"


def _run(tmp: Path, roles: Path | None = None, **variables: Any) -> tuple[int, str]:
    tmp.mkdir(parents=True, exist_ok=True)
    inventory = local_inventory(
        tmp,
        {"appliance_gateway": {"gw": {}}, "appliance_engine": {"engine": {}}},
        appliance_egress_lockdown_allowed_networks=["10.0.0.0/8"],
        appliance_gateway_user=USER,
        **variables,
    )
    playbook = tmp / "egress.yml"
    playbook.write_text(PLAYBOOK, encoding="utf-8")
    env = {"ANSIBLE_ROLES_PATH": str(roles)} if roles else None
    run = run_playbook(playbook, inventory, env=env)
    return run.returncode, run.output


def _tables(tmp: Path, roles: Path | None = None, **variables: Any) -> dict[str, str]:
    code, output = _run(tmp, roles, **variables)
    assert code == 0, output
    return {
        host: (tmp / f"root/{host}/etc/nftables.d/appliance-egress.nft").read_text()
        for host in ("gw", "engine")
    }


def _nft_check(text: str, tmp: Path) -> None:
    if not shutil.which("nft"):
        return
    path = tmp / "check.nft"
    path.write_text(text, encoding="utf-8")
    checked = subprocess.run(["nft", "-c", "-f", str(path)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


def _roles_without_provider_rules(tmp: Path) -> Path:
    """The roles as they were before providers: the loop over
    appliance_egress_lockdown_external_providers taken out of the table's template."""
    roles = tmp / "roles"
    shutil.copytree(ANSIBLE_DIR / "roles", roles)
    template = roles / "appliance_egress_lockdown/templates/appliance-egress.nft.j2"
    text = template.read_text(encoding="utf-8")
    block = re.search(
        r"\{% for provider in appliance_egress_lockdown_external_providers %\}.*?"
        r"\{% endfor %\}\n",
        text,
        re.S,
    )
    assert block is not None, "the provider loop moved: update this test"
    template.write_text(text.replace(block.group(0), ""), encoding="utf-8")
    return roles


def test_none_declared_leaves_the_table_unchanged(tmp_path: Path) -> None:
    plain = _tables(tmp_path / "plain")
    before = _tables(tmp_path / "before", _roles_without_provider_rules(tmp_path))
    assert plain == before
    empty = _tables(tmp_path / "empty", appliance_gateway_settings={"external_providers": []})
    assert empty == plain
    assert "skuid" not in plain["gw"] and "external provider" not in plain["gw"]


def test_providers_open_their_port_or_the_proxy_for_the_gateway_user_only(
    tmp_path: Path,
) -> None:
    plain = _tables(tmp_path / "plain")
    providers = [OPENAI, PARTNER, AZURE]
    tables = _tables(
        tmp_path / "providers", appliance_gateway_settings={"external_providers": providers}
    )
    # The engine host (and every other non-gateway host) gets nothing.
    assert tables["engine"] == plain["engine"]
    gw = tables["gw"]
    added = [ln.strip() for ln in gw.splitlines() if ln not in plain["gw"].splitlines()]
    assert added == [
        "# external provider openai: the gateway's user only",
        f'meta skuid "{USER}" ip daddr {{ 162.159.140.0/24 }} tcp dport 443 counter accept',
        f'meta skuid "{USER}" ip6 daddr {{ 2606:4700::/32 }} tcp dport 443 counter accept',
        "# external provider partner: the gateway's user only",
        f'meta skuid "{USER}" ip daddr {{ 203.0.113.0/24 }} tcp dport 8443 counter accept',
        "# external provider azure via http://proxy.corp.internal:3128: the gateway's user only",
        f'meta skuid "{USER}" ip daddr {{ 10.9.0.10/32 }} tcp dport 3128 counter accept',
    ]
    # Every rule that opens a provider is bound to the gateway's user, on the port the
    # settings say (ProviderSettings.egress_port).
    accepts = [ln for ln in added if ln.endswith("accept")]
    assert all(re.match(rf'meta skuid "{USER}" ', ln) for ln in accepts)
    settings = Settings.model_validate({"external_providers": providers})
    ports = [int(ln.split(" tcp dport ")[1].split()[0]) for ln in accepts]
    assert ports == [443, 443, 8443, 3128]
    assert sorted(set(ports)) == sorted({p.egress_port for p in settings.external_providers})
    # The final drop still ends the output chain.
    assert gw.rstrip().splitlines()[-3].strip() == "counter drop"
    _nft_check(gw, tmp_path)


@pytest.mark.parametrize(
    "egress",
    [
        {},
        {"proxy_url": "http://proxy.corp.internal:3128"},
        {"proxy_url": "http://proxy.corp.internal", "proxy_cidrs": ["10.9.0.10/32"]},
    ],
)
def test_refuses_a_provider_without_a_way_out(tmp_path: Path, egress: dict[str, Any]) -> None:
    code, output = _run(
        tmp_path, appliance_gateway_settings={"external_providers": [{**OPENAI, "egress": egress}]}
    )
    assert code != 0
    assert "external provider openai: egress.cidrs, or egress.proxy_url" in output


GATEWAY_PLAYBOOK = """\
- name: Gateway
  hosts: appliance_gateway
  gather_facts: false
  roles:
    - role: appliance_gateway
"""


def _gateway(tmp: Path, *providers: dict[str, Any]) -> tuple[int, str, Path]:
    inventory = local_inventory(
        tmp,
        {"appliance_gateway": {"gw": {}}},
        appliance_gateway_tls_mode="none",
        appliance_gateway_migrate=False,
        appliance_gateway_engine_api_key="s3cret",
        appliance_gateway_upstreams=[{"model": "m", "url": "http://10.0.10.10:8100"}],
        appliance_gateway_settings={"external_providers": list(providers)},
    )
    playbook = tmp / "gateway.yml"
    playbook.write_text(GATEWAY_PLAYBOOK, encoding="utf-8")
    run = run_playbook(playbook, inventory)
    return run.returncode, run.output, tmp / "root/gw/etc/appliance/appliance.yaml"


def test_gateway_role_writes_a_provider_with_a_key_file(tmp_path: Path) -> None:
    code, output, config = _gateway(tmp_path, OPENAI, PARTNER)
    assert code == 0, output
    settings = Settings.model_validate(yaml.safe_load(config.read_text()))
    assert [p.credential.file() for p in settings.external_providers] == [
        Path("/etc/appliance/secrets/openai.key")
    ] * 2


def test_gateway_role_refuses_a_kubernetes_secret(tmp_path: Path) -> None:
    """Nothing on a host places the Secret's key: the play stops before appliance.yaml."""
    in_secret = {**AZURE, "credential": {"secret_name": "frontier-keys", "secret_key": "azure"}}
    code, output, config = _gateway(tmp_path, OPENAI, in_secret)
    assert code != 0
    assert "external provider azure: credential.secret_name/secret_key" in output
    assert "set credential.secret_file" in output
    assert not config.exists()
