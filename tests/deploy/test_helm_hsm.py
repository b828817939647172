"""The chart with the audit keys in a PKCS#11 HSM (gateway.hsm): the vendor's module
mounted from the node, the PIN from a Secret, audit.keys set for the gateway, no audit
key file in the pod, egress to a network HSM, and values the schema refuses."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from appliance.config import Settings
from tests.deploy.helm_render import CHART, base_values, helm_sdk, merge, plan_values, render

HSM = {
    "enabled": True,
    "module": "/opt/hsm/lib/libCryptoki2_64.so",
    "tokenLabel": "appliance-audit",
    "algorithm": "ecdsa-p256",
    "moduleHostPath": "/opt/safenet/lunaclient",
    "pinSecret": {"name": "hsm-credentials", "key": "user-pin"},
    "env": [{"name": "ChrystokiConfigurationPath", "value": "/opt/hsm/etc"}],
    "egress": [{"cidr": "10.30.0.7/32", "port": 1792}],
}


def _values(hsm: dict[str, Any]) -> dict[str, Any]:
    return merge(merge(plan_values("dev-cpu"), base_values()), {"gateway": {"hsm": hsm}})


def _gateway_pod(out: Any) -> dict[str, Any]:
    return dict(out.one("Deployment", "-gateway")["spec"]["template"]["spec"])


def test_the_gateway_uses_the_token_and_mounts_no_key_file() -> None:
    out = render(_values(HSM))
    config = yaml.safe_load(out.one("ConfigMap", "-config")["data"]["appliance.yaml"])
    keys = config["audit"]["keys"]
    assert keys == {"backend": "pkcs11", "pkcs11": {
        "module": HSM["module"], "token_label": "appliance-audit",
        "pin_file": "/var/run/appliance/hsm/pin", "algorithm": "ecdsa-p256",
    }}  # fmt: skip
    assert "master_key_file" not in config["audit"] and "signing_key_file" not in config["audit"]
    settings = Settings(**config)  # the gateway's own settings accept it
    assert settings.audit.keys.pkcs11.algorithm == "ecdsa-p256"

    pod = _gateway_pod(out)
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "secrets" not in volumes  # the audit key files are not in the pod at all
    assert volumes["hsm-pin"]["secret"] == {
        "secretName": "hsm-credentials", "defaultMode": 0o400,
        "items": [{"key": "user-pin", "path": "pin"}],
    }  # fmt: skip
    assert volumes["hsm-module"]["hostPath"] == {
        "path": "/opt/safenet/lunaclient",
        "type": "Directory",
    }
    (container,) = [c for c in pod["containers"] if c["name"] == "gateway"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert (
        mounts["hsm-pin"]["mountPath"] == "/var/run/appliance/hsm" and mounts["hsm-pin"]["readOnly"]
    )
    assert mounts["hsm-module"] == {"name": "hsm-module", "mountPath": "/opt/hsm", "readOnly": True}
    env = {e["name"]: e for e in container["env"]}
    assert env["ChrystokiConfigurationPath"]["value"] == "/opt/hsm/etc"
    policy = out.one("NetworkPolicy", "-gateway")
    assert {"to": [{"ipBlock": {"cidr": "10.30.0.7/32"}}],
            "ports": [{"protocol": "TCP", "port": 1792}]} in policy["spec"]["egress"]  # fmt: skip


def test_without_an_hsm_the_key_files_are_mounted_as_before() -> None:
    out = render(_values({"enabled": False, "egress": HSM["egress"]}))
    config = yaml.safe_load(out.one("ConfigMap", "-config")["data"]["appliance.yaml"])
    assert "keys" not in config["audit"]
    assert config["audit"]["master_key_file"] == "/var/run/appliance/secrets/audit_master_key"
    volumes = {v["name"] for v in _gateway_pod(out)["volumes"]}
    assert "secrets" in volumes and "hsm-pin" not in volumes and "hsm-module" not in volumes
    egress = out.one("NetworkPolicy", "-gateway")["spec"]["egress"]
    assert all(rule.get("to") != [{"ipBlock": {"cidr": "10.30.0.7/32"}}] for rule in egress)


def test_the_pin_defaults_to_the_release_secret_and_the_module_to_the_image() -> None:
    hsm = {"enabled": True, "module": "/usr/lib/softhsm/libsofthsm2.so", "tokenLabel": "t"}
    pod = _gateway_pod(render(_values(hsm)))
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["hsm-pin"]["secret"]["secretName"] == "appliance-secrets"
    assert volumes["hsm-pin"]["secret"]["items"] == [{"key": "hsm-pin", "path": "pin"}]
    assert "hsm-module" not in volumes


@pytest.mark.parametrize(
    "hsm",
    [
        {"enabled": True, "tokenLabel": "t"},  # no module
        {"enabled": True, "module": "/m.so"},  # no token
        {**HSM, "algorithm": "rsa"},
        {**HSM, "moduleHostPath": "relative/dir"},
        {**HSM, "egress": [{"cidr": "10.0.0.1/32"}]},
        {**HSM, "pin": "1234"},  # never the PIN itself
    ],
    ids=["no-module", "no-token", "algorithm", "relative-host-path", "egress-port", "pin-value"],
)
def test_the_schema_refuses_incomplete_or_unsafe_values(hsm: dict[str, Any]) -> None:
    helm = helm_sdk()
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(helm.HelmError):
        chart.validate_schema(_values(hsm))
