"""config.external_providers (issue #17) opens egress for the gateway pods only: the
provider's CIDRs on 443 or its egress proxy. With none declared the chart renders exactly
as before: no rule, not a byte more."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.helm_render import (
    CHART,
    NAMESPACE,
    RELEASE,
    base_values,
    helm_sdk,
    merge,
    plan_values,
    render,
)

OPENAI: dict[str, Any] = {
    "name": "openai",
    "base_url": "https://api.openai.com/v1",
    "credential": {"secret_name": "frontier-keys", "secret_key": "openai"},
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


def _values(*providers: dict[str, Any]) -> dict[str, Any]:
    values = merge(plan_values("dev-cpu"), base_values())
    if providers:
        values = merge(values, {"config": {"external_providers": list(providers)}})
    return values


def _manifests(values: dict[str, Any], chart_dir: Path = CHART) -> dict[str, str]:
    helm = helm_sdk()
    with helm.Chart.load(str(chart_dir)) as chart:
        chart.validate_schema(values)
        rendered: dict[str, str] = chart.render(
            values, name=RELEASE, namespace=NAMESPACE, is_install=True
        )
    return rendered


def _chart_without_provider_rules(tmp: Path) -> Path:
    """A copy of the chart as it was before providers: the range over
    config.external_providers taken out of the gateway's NetworkPolicy."""
    copy = tmp / "appliance"
    shutil.copytree(CHART, copy)
    policy = copy / "templates/networkpolicy/gateway.yaml"
    text = policy.read_text(encoding="utf-8")
    block = re.search(
        r"\n *\{\{- range \(\(\.Values\.config[^\n]*external_providers.*?\{\{- end \}\}", text, re.S
    )
    assert block is not None, "the provider range moved: update this test"
    policy.write_text(text.replace(block.group(0), ""), encoding="utf-8")
    return copy


def _ip_blocks(rule: dict[str, Any]) -> list[str]:
    return [peer["ipBlock"]["cidr"] for peer in rule.get("to", []) if "ipBlock" in peer]


def test_none_declared_renders_byte_identical(tmp_path: Path) -> None:
    """Without providers the chart renders byte for byte what it rendered before the
    provider rule existed; an explicit empty list changes only appliance.yaml (and the
    gateway's config checksum), no NetworkPolicy."""
    today = _manifests(_values(), _chart_without_provider_rules(tmp_path))
    without = _manifests(_values())
    assert without == today
    empty = _manifests(merge(_values(), {"config": {"external_providers": []}}))
    assert empty.keys() == without.keys()
    differing = {path for path in without if without[path] != empty[path]}
    assert differing <= {
        "appliance/templates/configmap.yaml",
        "appliance/templates/gateway/deployment.yaml",
    }, differing
    for path in without:
        if "networkpolicy" in path:
            assert empty[path] == without[path], path
    assert "external provider" not in "".join(without.values())


def test_gateway_policy_gains_one_rule_per_provider() -> None:
    before = render(_values())
    after = render(_values(OPENAI, AZURE))
    old = before.one("NetworkPolicy", "-gateway")["spec"]["egress"]
    new = after.one("NetworkPolicy", "-gateway")["spec"]["egress"]
    assert new[: len(old)] == old
    added = new[len(old) :]
    assert added == [
        {
            "to": [
                {"ipBlock": {"cidr": "162.159.140.0/24"}},
                {"ipBlock": {"cidr": "2606:4700::/32"}},
            ],
            "ports": [{"protocol": "TCP", "port": 443}],
        },
        {
            "to": [{"ipBlock": {"cidr": "10.9.0.10/32"}}],
            "ports": [{"protocol": "TCP", "port": 3128}],
        },
    ]
    # Only the gateway's policy changes: engine, migrations, default-deny stay as they were.
    for name in ("-engine", "-migrations", "-default-deny", "-allow-dns"):
        assert after.one("NetworkPolicy", name) == before.one("NetworkPolicy", name)
    opened = {c for rule in added for c in _ip_blocks(rule)}
    for policy in after.of_kind("NetworkPolicy"):
        if policy["metadata"]["name"].endswith("-gateway"):
            continue
        for rule in policy["spec"].get("egress") or []:
            assert not opened & set(_ip_blocks(rule)), policy["metadata"]["name"]


def test_rule_comment_names_the_provider() -> None:
    text = _manifests(_values(OPENAI, AZURE))["appliance/templates/networkpolicy/gateway.yaml"]
    assert "# external provider openai\n" in text
    assert "# external provider azure via http://proxy.corp.internal:3128\n" in text


@pytest.mark.parametrize(
    ("egress", "pattern"),
    [
        ({"proxy_url": "http://proxy.corp.internal", "proxy_cidrs": ["10.9.0.10/32"]}, "port"),
        ({"proxy_url": "http://proxy.corp.internal:3128"}, "proxy_cidrs"),
        ({}, "egress.cidrs or egress.proxy_url"),
    ],
)
def test_refuses_a_provider_without_a_way_out(egress: dict[str, Any], pattern: str) -> None:
    """The chart checks what the settings schema's JSON form cannot: a proxy without its
    port or addresses, a provider with nothing to open."""
    helm = helm_sdk()
    values = _values({**OPENAI, "egress": egress})
    with pytest.raises(helm.HelmError, match=pattern):
        with helm.Chart.load(str(CHART)) as chart:
            chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
