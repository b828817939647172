"""The audit log's background jobs in the chart (issue #20): the SIEM forwarder
(a stateless Deployment, only with config.audit.forward.host: its cursor is a database
row every gateway reads), retention apply
(a daily CronJob) and witness submission (a CronJob, only with config.audit.witnesses).
Each runs the gateway's image with the gateway's settings, Secret, key mounts and
security context, under a NetworkPolicy that opens only what it needs."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from appliance.config import Settings
from tests.deploy.helm_render import (
    CHART,
    Rendered,
    base_values,
    helm_sdk,
    merge,
    plan_values,
    render,
)

KUBE_VERSION = "1.33.0"
DATABASE_RULE = {
    "to": [{"ipBlock": {"cidr": "10.20.0.5/32"}}],
    "ports": [{"protocol": "TCP", "port": 5432}],
}
SIEM = {"host": "10.40.0.9", "format": "cef"}
WITNESSES = [
    {"verifier_key": "witness.example.org/w1+01234567+AQ", "url": "https://witness.example.org/"},
    {"verifier_key": "w2+89abcdef+AQ", "url": "http://10.50.0.2:8080/w2/"},
]
WITNESS_ADDRESSES = [{"host": "witness.example.org", "cidrs": ["203.0.113.7/32"]}]


def _rule(cidr: str, port: int, protocol: str = "TCP") -> dict[str, Any]:
    return {"to": [{"ipBlock": {"cidr": cidr}}], "ports": [{"protocol": protocol, "port": port}]}


def _values(**override: Any) -> dict[str, Any]:
    return merge(merge(plan_values("dev-cpu"), base_values()), override)


def _audit(**audit: Any) -> dict[str, Any]:
    return {"config": {"audit": audit}}


def _config(out: Rendered) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(out.one("ConfigMap", "-config")["data"]["appliance.yaml"])
    return data


def _gateway_pod(out: Rendered) -> dict[str, Any]:
    spec: dict[str, Any] = out.one("Deployment", "-gateway")["spec"]["template"]["spec"]
    return spec


def _cron_pod(cron: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return spec


def _named(out: Rendered, kind: str, suffix: str) -> list[dict[str, Any]]:
    return [o for o in out.of_kind(kind) if o["metadata"]["name"].endswith(suffix)]


KEY_VOLUMES = {"secrets", "hsm-pin", "hsm-module"}
OWN_VOLUMES = {"forward-cursor", "siem-tls"}


def _assert_runs_like_the_gateway(
    pod: dict[str, Any], gateway: dict[str, Any], *, keys: bool = True
) -> None:
    """Same image, environment (secrets by reference), config mounts and security
    context as the gateway pods; the same key mounts too, unless ``keys`` is False (then
    none at all)."""
    (container,) = pod["containers"]
    (gw,) = gateway["containers"]
    assert container["image"] == gw["image"]
    assert container["env"] == gw["env"]
    assert container["securityContext"] == gw["securityContext"]
    assert pod["securityContext"] == gateway["securityContext"]
    assert pod["automountServiceAccountToken"] is False
    skip = OWN_VOLUMES if keys else OWN_VOLUMES | KEY_VOLUMES
    assert [m for m in container["volumeMounts"] if m["name"] not in OWN_VOLUMES] == [
        m for m in gw["volumeMounts"] if m["name"] not in skip
    ]
    assert [v for v in pod["volumes"] if v["name"] not in OWN_VOLUMES] == [
        v for v in gateway["volumes"] if v["name"] not in skip
    ]
    if not keys:
        assert not KEY_VOLUMES & {v["name"] for v in pod["volumes"]}


def _validate(out: Rendered) -> None:
    import kubernetes_validate

    for obj in out.objects:
        if not obj["apiVersion"].startswith("k8s.keycloak.org/"):
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


# --- by default -------------------------------------------------------------------------


def test_by_default_only_retention_runs_and_nothing_opens() -> None:
    out = render(_values())
    assert not _named(out, "Deployment", "-audit-forward")
    assert not out.of_kind("PersistentVolumeClaim")
    assert not _named(out, "CronJob", "-audit-witness")
    assert "cursor_file" not in _config(out)["audit"].get("forward", {})
    (cron,) = out.of_kind("CronJob")
    assert cron["metadata"]["name"] == "appliance-audit-retention"
    assert cron["spec"]["schedule"] == "17 3 * * *"  # daily
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = _cron_pod(cron)
    assert pod["restartPolicy"] == "Never"
    assert pod["containers"][0]["command"] == [
        "appliance", "audit", "retention", "apply", "--actor", "scheduled-retention",
    ]  # fmt: skip
    _assert_runs_like_the_gateway(pod, _gateway_pod(out))
    policies = {p["metadata"]["name"]: p for p in out.of_kind("NetworkPolicy")}
    assert "appliance-audit-forward" not in policies
    assert "appliance-audit-witness" not in policies
    retention = policies["appliance-audit-retention"]["spec"]
    assert retention["ingress"] == [] and retention["egress"] == [DATABASE_RULE]
    gateway_mounts = _gateway_pod(out)["containers"][0]["volumeMounts"]
    assert all(m["name"] != "forward-cursor" for m in gateway_mounts)
    _validate(out)


def test_retention_schedule_time_zone_and_off() -> None:
    out = render(
        _values(auditJobs={"retention": {"schedule": "@daily"}, "timeZone": "Europe/Berlin"})
    )
    (cron,) = out.of_kind("CronJob")
    assert cron["spec"]["schedule"] == "@daily" and cron["spec"]["timeZone"] == "Europe/Berlin"
    _validate(out)
    off = render(_values(auditJobs={"retention": {"enabled": False}}))
    assert not off.of_kind("CronJob")
    assert not _named(off, "NetworkPolicy", "-audit-retention")


# --- the SIEM forwarder ------------------------------------------------------------------


def test_forwarder_runs_when_a_siem_is_configured() -> None:
    out = render(_values(**_audit(forward=SIEM)))
    deployment = out.one("Deployment", "-audit-forward")
    spec = deployment["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}  # never two
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["appliance", "audit", "forward"]
    # It reads metadata only: no audit key file reaches it.
    _assert_runs_like_the_gateway(pod, _gateway_pod(out), keys=False)
    assert "secrets" in {v["name"] for v in _gateway_pod(out)["volumes"]}

    # Stateless: the cursor is a database row, so no volume and no cursor file.
    assert not out.of_kind("PersistentVolumeClaim")
    assert all(v["name"] != "forward-cursor" for v in pod["volumes"])
    assert all(m["name"] != "forward-cursor" for m in container["volumeMounts"])
    gateway = _gateway_pod(out)
    assert all(v["name"] != "forward-cursor" for v in gateway["volumes"])
    config = _config(out)
    forward = Settings(**config).audit.forward
    assert forward.cursor_file is None
    assert forward.host == "10.40.0.9" and forward.format == "cef"
    assert forward.ca_file is None

    # Egress: the database and the SIEM receiver (default tls: 6514/TCP), nothing else.
    policy = out.one("NetworkPolicy", "-audit-forward")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"] and policy["ingress"] == []
    assert policy["egress"] == [DATABASE_RULE, _rule("10.40.0.9/32", 6514)]
    # Only the forwarder gets it.
    for name in ("-gateway", "-audit-retention"):
        egress = out.one("NetworkPolicy", name)["spec"]["egress"]
        assert all(r.get("to") != [{"ipBlock": {"cidr": "10.40.0.9/32"}}] for r in egress), name
    _validate(out)


@pytest.mark.parametrize(
    ("forward", "rule"),
    [
        ({"transport": "udp"}, {"protocol": "UDP", "port": 514}),
        ({"transport": "tcp"}, {"protocol": "TCP", "port": 514}),
        ({"transport": "tls", "port": 10514}, {"protocol": "TCP", "port": 10514}),
    ],
)
def test_siem_egress_follows_the_transport_and_port(
    forward: dict[str, Any], rule: dict[str, Any]
) -> None:
    out = render(_values(**_audit(forward={**SIEM, **forward})))
    egress = out.one("NetworkPolicy", "-audit-forward")["spec"]["egress"]
    assert egress[-1]["ports"] == [rule]


def test_a_siem_host_name_needs_its_address_blocks() -> None:
    values = _values(**_audit(forward={"host": "siem.example.org"}))
    with pytest.raises(Exception, match=r"auditJobs\.forward\.cidrs"):
        render(values)
    # Without NetworkPolicies there is nothing to open, so nothing to name.
    unpoliced = render(merge(values, {"networkPolicy": {"enabled": False}}))
    assert unpoliced.one("Deployment", "-audit-forward")
    assert not unpoliced.of_kind("NetworkPolicy")
    out = render(
        merge(values, {"auditJobs": {"forward": {"cidrs": ["10.40.0.0/28", "10.41.0.9/32"]}}})
    )
    egress = out.one("NetworkPolicy", "-audit-forward")["spec"]["egress"]
    assert egress[-1]["to"] == [
        {"ipBlock": {"cidr": "10.40.0.0/28"}},
        {"ipBlock": {"cidr": "10.41.0.9/32"}},
    ]


def test_importing_the_cursor_of_an_older_chart() -> None:
    """The upgrade from the chart that kept the cursor on a PVC: that claim, read-only in
    the forwarder only, and cursor_file pointing into it, for the one-time import."""
    forward = {"importCursorClaim": "appliance-audit-forward"}
    out = render(_values(**_audit(forward=SIEM), auditJobs={"forward": forward}))
    assert not out.of_kind("PersistentVolumeClaim")  # the old claim is kept, not created
    pod = out.one("Deployment", "-audit-forward")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["forward-cursor"]["persistentVolumeClaim"] == {
        "claimName": "appliance-audit-forward", "readOnly": True,
    }  # fmt: skip
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["forward-cursor"] == {
        "name": "forward-cursor", "mountPath": "/var/lib/appliance-forward", "readOnly": True,
    }  # fmt: skip
    settings = Settings(**_config(out)).audit.forward
    assert str(settings.cursor_file) == "/var/lib/appliance-forward/audit_forward_cursor.json"
    # Neither the gateway nor retention mounts it.
    assert all(v["name"] != "forward-cursor" for v in _gateway_pod(out)["volumes"])
    retention = _cron_pod(out.one("CronJob", "-audit-retention"))
    assert all(v["name"] != "forward-cursor" for v in retention["volumes"])
    _validate(out)


def test_the_removed_cursor_volume_values_are_refused() -> None:
    for old in ({"persistence": {"size": "16Mi"}}, {"persistence": {"mountInGateway": True}}):
        with pytest.raises(Exception, match="persistence"):
            render(_values(**_audit(forward=SIEM), auditJobs={"forward": old}))


def test_siem_tls_files_from_a_secret() -> None:
    tls = {"existingSecret": "siem-tls", "clientCertificate": True}
    out = render(_values(**_audit(forward=SIEM), auditJobs={"forward": {"tls": tls}}))
    forward = Settings(**_config(out)).audit.forward
    assert str(forward.ca_file) == "/var/run/appliance/siem-tls/ca.crt"
    assert str(forward.cert_file) == "/var/run/appliance/siem-tls/tls.crt"
    assert str(forward.key_file) == "/var/run/appliance/siem-tls/tls.key"
    pod = out.one("Deployment", "-audit-forward")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["siem-tls"]["secret"]["secretName"] == "siem-tls"
    assert [i["key"] for i in volumes["siem-tls"]["secret"]["items"]] == [
        "ca.crt",
        "tls.crt",
        "tls.key",
    ]
    mounts = {m["name"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["siem-tls"] == {
        "name": "siem-tls",
        "mountPath": "/var/run/appliance/siem-tls",
        "readOnly": True,
    }
    ca_only = render(
        _values(**_audit(forward=SIEM), auditJobs={"forward": {"tls": {"existingSecret": "s"}}})
    )
    forward = Settings(**_config(ca_only)).audit.forward
    assert forward.ca_file is not None and forward.cert_file is None and forward.key_file is None


# --- witnesses ---------------------------------------------------------------------------


def test_witness_submit_runs_when_witnesses_are_configured() -> None:
    out = render(
        _values(
            **_audit(witnesses=WITNESSES), auditJobs={"witness": {"addresses": WITNESS_ADDRESSES}}
        )
    )
    cron = out.one("CronJob", "-audit-witness")
    assert cron["spec"]["schedule"] == "*/5 * * * *"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = _cron_pod(cron)
    assert pod["containers"][0]["command"] == ["appliance", "witness", "submit"]
    _assert_runs_like_the_gateway(pod, _gateway_pod(out))
    assert len(Settings(**_config(out)).audit.witnesses) == 2

    policy = out.one("NetworkPolicy", "-audit-witness")["spec"]
    assert policy["ingress"] == []
    assert policy["egress"] == [
        DATABASE_RULE,
        _rule("203.0.113.7/32", 443),
        _rule("10.50.0.2/32", 8080),
    ]
    for name in ("-gateway", "-audit-retention"):
        egress = out.one("NetworkPolicy", name)["spec"]["egress"]
        assert all("203.0.113.7/32" not in str(r.get("to")) for r in egress), name
    _validate(out)

    hourly = render(
        _values(**_audit(witnesses=WITNESSES[1:]), auditJobs={"witness": {"schedule": "7 * * * *"}})
    )
    assert hourly.one("CronJob", "-audit-witness")["spec"]["schedule"] == "7 * * * *"


def test_a_witness_host_name_needs_its_address_blocks() -> None:
    with pytest.raises(Exception, match=r"auditJobs\.witness\.addresses.*witness\.example\.org"):
        render(_values(**_audit(witnesses=WITNESSES)))


# --- with the keys in an HSM ---------------------------------------------------------------


def test_jobs_get_the_gateways_hsm_mounts_and_egress() -> None:
    hsm = {
        "enabled": True,
        "module": "/opt/hsm/lib/libCryptoki2_64.so",
        "tokenLabel": "appliance-audit",
        "moduleHostPath": "/opt/safenet/lunaclient",
        "egress": [{"cidr": "10.30.0.7/32", "port": 1792}],
    }
    out = render(
        _values(
            **_audit(forward=SIEM, witnesses=WITNESSES[1:]),
            gateway={"hsm": hsm},
        )
    )
    gateway = _gateway_pod(out)
    hsm_rule = {
        "to": [{"ipBlock": {"cidr": "10.30.0.7/32"}}],
        "ports": [{"protocol": "TCP", "port": 1792}],
    }
    for name in ("-audit-retention", "-audit-witness"):
        pod = _cron_pod(out.one("CronJob", name))
        _assert_runs_like_the_gateway(pod, gateway)
        assert {"hsm-pin", "hsm-module"} <= {v["name"] for v in pod["volumes"]}
        assert "secrets" not in {v["name"] for v in pod["volumes"]}
        assert hsm_rule in out.one("NetworkPolicy", name)["spec"]["egress"]
    # The forwarder reads metadata only: it never reaches the HSM, nor holds its PIN.
    assert hsm_rule not in out.one("NetworkPolicy", "-audit-forward")["spec"]["egress"]
    forwarder = out.one("Deployment", "-audit-forward")["spec"]["template"]["spec"]
    _assert_runs_like_the_gateway(forwarder, gateway, keys=False)


def test_audit_job_values_are_checked_by_the_schema() -> None:
    helm = helm_sdk()
    from helm_python.errors import HelmValuesError

    with helm.Chart.load(str(CHART)) as chart:
        for bad in (
            {"auditJobs": {"retention": {"schedule": "daily"}}},
            {"auditJobs": {"witness": {"addresses": [{"host": "w.example"}]}}},
            {"auditJobs": {"forward": {"persistence": {"accessModes": ["ReadOnlyMany"]}}}},
            {"auditJobs": {"forwarder": {}}},
        ):
            with pytest.raises(HelmValuesError):
                chart.validate_schema(merge(_values(), bad))
