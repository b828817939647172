"""config.external_providers (issue #17) opens egress for the gateway pods only: the
provider's CIDRs on its base_url's port (443 unless named) or its egress proxy, and
mounts the Secrets their credentials name into the gateway container. With none declared
the chart renders exactly as before: no rule, no volume, not a byte more."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from appliance.config import Settings
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
# A private endpoint on its own port, verified by the site's CA, key in another Secret.
PARTNER: dict[str, Any] = {
    **OPENAI,
    "name": "partner",
    "base_url": "https://llm.partner.example:8443/v1",
    "credential": {"secret_name": "partner-llm", "secret_key": "api-key"},
    "ca_file": "/etc/appliance/partner/ca.pem",
    "models": ["llama-4@partner"],
    "egress": {"cidrs": ["203.0.113.0/24"]},
}
SECRETS_DIR = "/var/run/appliance/provider-secrets"


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
    config.external_providers taken out of the gateway's NetworkPolicy, the provider
    Secrets' mounts and volumes out of the gateway's pod template (shared by its
    Deployment and, with the audit spool, its StatefulSet)."""
    copy = tmp / "appliance"
    shutil.copytree(CHART, copy)
    policy = copy / "templates/networkpolicy/gateway.yaml"
    text = policy.read_text(encoding="utf-8")
    block = re.search(
        r"\n *\{\{- range \(\(\.Values\.config[^\n]*external_providers.*?\{\{- end \}\}", text, re.S
    )
    assert block is not None, "the provider range moved: update this test"
    policy.write_text(text.replace(block.group(0), ""), encoding="utf-8")
    pod = copy / "templates/gateway/_pod.tpl"
    text = pod.read_text(encoding="utf-8")
    blocks = re.findall(
        r"\n *\{\{- with include \"appliance\.gateway\.providerSecret.*?\{\{- end \}\}", text, re.S
    )
    assert len(blocks) == 2, "the provider Secrets' mount or volume moved: update this test"
    for found in blocks:
        text = text.replace(found, "")
    pod.write_text(text, encoding="utf-8")
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


def test_a_provider_on_its_own_port_gets_that_port() -> None:
    """egress.cidrs open base_url's port (ProviderSettings.egress_port); one without a
    port keeps 443, one behind a proxy the proxy's."""
    before = render(_values())
    after = render(_values(OPENAI, PARTNER, AZURE))
    old = before.one("NetworkPolicy", "-gateway")["spec"]["egress"]
    added = after.one("NetworkPolicy", "-gateway")["spec"]["egress"][len(old) :]
    opened = {tuple(_ip_blocks(rule)): rule["ports"] for rule in added}
    providers = Settings.model_validate({"external_providers": [OPENAI, PARTNER, AZURE]})
    expected = {
        tuple(p.egress.opened_cidrs): [{"protocol": "TCP", "port": p.egress_port}]
        for p in providers.external_providers
    }
    assert opened == expected
    assert opened[("203.0.113.0/24",)] == [{"protocol": "TCP", "port": 8443}]
    assert opened[("162.159.140.0/24", "2606:4700::/32")] == [{"protocol": "TCP", "port": 443}]
    assert opened[("10.9.0.10/32",)] == [{"protocol": "TCP", "port": 3128}]


def test_ca_file_reaches_appliance_yaml_and_nothing_else() -> None:
    """ca_file is passed through; the chart mounts nothing for it (the admin does)."""
    with_ca = render(_values(PARTNER))
    without_ca = render(_values({k: v for k, v in PARTNER.items() if k != "ca_file"}))
    config = with_ca.one("ConfigMap", "-config")["data"]["appliance.yaml"]
    assert "ca_file: /etc/appliance/partner/ca.pem" in config
    gateway, plain = with_ca.one("Deployment", "-gateway"), without_ca.one("Deployment", "-gateway")
    spec, plain_spec = gateway["spec"]["template"]["spec"], plain["spec"]["template"]["spec"]
    assert spec["volumes"] == plain_spec["volumes"]
    assert spec["containers"] == plain_spec["containers"]


def _gateway_pod(values: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = render(values).one("Deployment", "-gateway")["spec"]["template"]["spec"]
    return pod


def test_credential_secrets_are_mounted_into_the_gateway_only() -> None:
    """One read-only volume per distinct Secret, with only the keys the credentials name,
    at the directory ProviderCredential.file() reads."""
    second_key = {**AZURE, "credential": {"secret_name": "frontier-keys", "secret_key": "azure"}}
    on_disk = {**PARTNER, "name": "disk", "models": ["m@disk"],
               "credential": {"secret_file": "/etc/appliance/secrets/disk.key"}}  # fmt: skip
    values = _values(OPENAI, second_key, PARTNER, on_disk)
    plain, pod = _gateway_pod(_values()), _gateway_pod(values)
    added_volumes = [v for v in pod["volumes"] if v not in plain["volumes"]]
    assert added_volumes == [
        {
            "name": "provider-secret-0",
            "secret": {
                "secretName": "frontier-keys",
                "defaultMode": 0o400,
                "items": [
                    {"key": "azure", "path": "azure"},
                    {"key": "openai", "path": "openai"},
                ],
            },
        },
        {
            "name": "provider-secret-1",
            "secret": {
                "secretName": "partner-llm",
                "defaultMode": 0o400,
                "items": [{"key": "api-key", "path": "api-key"}],
            },
        },
    ]
    (container,) = pod["containers"]
    (plain_container,) = plain["containers"]
    mounts = [m for m in container["volumeMounts"] if m not in plain_container["volumeMounts"]]
    assert mounts == [
        {
            "name": "provider-secret-0",
            "mountPath": f"{SECRETS_DIR}/frontier-keys",
            "readOnly": True,
        },
        {"name": "provider-secret-1", "mountPath": f"{SECRETS_DIR}/partner-llm", "readOnly": True},
    ]
    # Each credential's file() is a mounted key of a mounted Secret.
    providers = Settings.model_validate({"external_providers": [OPENAI, second_key, PARTNER]})
    by_path = {m["mountPath"]: m["name"] for m in mounts}
    volumes = {v["name"]: v["secret"] for v in added_volumes}
    for provider in providers.external_providers:
        path = provider.credential.file()
        secret = volumes[by_path[str(path.parent)]]
        assert {"key": path.name, "path": path.name} in secret["items"]
    # The pod's fsGroup is the gateway's group: 0400 files are readable by it (as the
    # audit keys are), and by nobody else.
    assert pod["securityContext"]["fsGroup"] == container["securityContext"]["runAsUser"]
    # No other workload (migrations, audit jobs share the gateway's image) gets a key.
    others = [
        (owner, template)
        for owner, template in render(values).pod_templates()
        if (owner["kind"], owner["metadata"]["name"]) != ("Deployment", f"{RELEASE}-gateway")
    ]
    assert others
    for owner, template in others:
        assert "provider-secret" not in str(template), owner["metadata"]["name"]


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
