"""engine.rdma: the site's RDMA fabric on the engine pods (device-plugin resource, Multus
networks, NVSHMEM environment), the root opt-in that DeepEP's capabilities need, the
LeaderWorkerSet's exclusive topology, runtimeClassName and schedulerName; and the
combinations the chart refuses."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from appliance.cli.main import app
from tests.deploy.helm_render import (
    CHART,
    PROFILES,
    Rendered,
    base_values,
    helm_sdk,
    merge,
    plan_values,
    render,
)

KUBE_VERSION = "1.33.0"
LWS_SCHEMA = Path(__file__).parent / "schemas" / "leaderworkerset-v1.json"
DIGEST = "sha256:" + "b" * 64
MULTUS = [{"name": "ib-fabric", "namespace": "network-operator"}]
RDMA_ON = {"enabled": True, "resourceName": "rdma/ib", "count": 1}

# One engine node (Deployment) and two (LeaderWorkerSet, TP8 x PP2: NCCL, no DeepEP).
WORKLOADS = {"deployment": "deepseek-v3-1x8-h200", "lws": "deepseek-v3-2x8-h100"}


@cache
def _wide_ep_plan() -> dict[str, Any]:
    """DP16 + EP16 over two H200 nodes: what `appliance plan --fabric rdma` emits."""
    args = [*PROFILES["deepseek-v3-1x8-h200"], "--nodes", "2", "--goal", "throughput",
            "--fabric", "rdma", "-f", "helm-values"]  # fmt: skip
    result = CliRunner().invoke(app, ["plan", *args])
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = yaml.safe_load(result.stdout)
    return data


def _values(workload: str, engine: dict[str, Any] | None = None) -> dict[str, Any]:
    plan = _wide_ep_plan() if workload == "wide-ep" else plan_values(WORKLOADS[workload])
    return merge(merge(plan, base_values()), {"engine": engine or {}})


def _engine_pods(out: Rendered) -> list[dict[str, Any]]:
    return [
        pod
        for _, pod in out.pod_templates()
        if pod["metadata"]["labels"]["app.kubernetes.io/component"] == "engine"
    ]


def _container(pod: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod["spec"]["containers"]
    return container


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "<ref>") for e in container["env"]}


def _refused(values: dict[str, Any], pattern: str) -> None:
    helm = helm_sdk()
    with pytest.raises(helm.HelmError, match=pattern):
        render(values)


def _validate(out: Rendered) -> None:
    """Kubernetes 1.33's schemas for every object; the LeaderWorkerSet's own fields
    against tests/deploy/schemas, its pod templates as core PodTemplates."""
    import kubernetes_validate

    lws_schema = json.loads(LWS_SCHEMA.read_text())
    for obj in out.objects:
        if obj["kind"] == "LeaderWorkerSet":
            jsonschema.validate(obj, lws_schema)
            lwt = obj["spec"]["leaderWorkerTemplate"]
            for template in (lwt["leaderTemplate"], lwt["workerTemplate"]):
                pod_template = {"apiVersion": "v1", "kind": "PodTemplate",
                                "metadata": {"name": "t"}, "template": template}  # fmt: skip
                kubernetes_validate.validate(pod_template, KUBE_VERSION, strict=True)
        elif obj["kind"] == "KeycloakRealmImport":
            continue
        else:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


# --- every combination: rdma x workload x root opt-in x Multus ----------------------


@pytest.mark.parametrize("multus", [False, True], ids=["no-multus", "multus"])
@pytest.mark.parametrize("root", [False, True], ids=["non-root", "root"])
@pytest.mark.parametrize("rdma", [False, True], ids=["rdma-off", "rdma-on"])
@pytest.mark.parametrize("workload", sorted(WORKLOADS))
def test_rdma_combinations(workload: str, rdma: bool, root: bool, multus: bool) -> None:
    engine: dict[str, Any] = {"rdma": {**RDMA_ON, "enabled": rdma, "runAsRoot": root}}
    if multus:
        engine["rdma"]["networks"] = MULTUS
        engine["nccl"] = {"socketIfname": "net1"}
    values = _values(workload, engine)
    if root and not rdma:
        _refused(values, r"engine\.rdma\.runAsRoot: only with engine\.rdma\.enabled")
        return
    out = render(values)
    assert out.of_kind("LeaderWorkerSet" if workload == "lws" else "Deployment")
    _validate(out)
    pods = _engine_pods(out)
    assert len(pods) == (2 if workload == "lws" else 1)
    for pod in pods:  # leader and worker alike
        container = _container(pod)
        resources, env = container["resources"], _env(container)
        # the device plugin's resource, requested like the GPUs
        assert ("rdma/ib" in resources["limits"]) is rdma
        assert ("rdma/ib" in resources["requests"]) is rdma
        if rdma:
            assert resources["limits"]["rdma/ib"] == resources["requests"]["rdma/ib"] == 1
            assert env["NVSHMEM_IB_ENABLE_IBGDA"] == "1"
        else:
            assert not [name for name in env if name.startswith("NVSHMEM_")]
        # Multus attaches net1, and NCCL/Gloo/NVSHMEM bootstrap use it
        annotations = pod["metadata"].get("annotations", {})
        if multus:
            networks = json.loads(annotations["k8s.v1.cni.cncf.io/networks"])
            assert networks == MULTUS
            assert env["NCCL_SOCKET_IFNAME"] == env["GLOO_SOCKET_IFNAME"] == "net1"
            if rdma:
                assert env["NVSHMEM_BOOTSTRAP_UID_SOCK_IFNAME"] == "net1"
        else:
            assert "k8s.v1.cni.cncf.io/networks" not in annotations
        # root only with the explicit opt-in, and then with DeepEP's capabilities
        pod_ctx, ctx = pod["spec"]["securityContext"], container["securityContext"]
        assert ctx["capabilities"]["drop"] == ["ALL"]
        assert ctx["allowPrivilegeEscalation"] is False and ctx["privileged"] is False
        assert ctx["readOnlyRootFilesystem"] is True
        assert ctx["seccompProfile"]["type"] == "RuntimeDefault"
        if rdma and root:
            assert pod_ctx["runAsUser"] == ctx["runAsUser"] == 0
            assert pod_ctx["runAsNonRoot"] is False and ctx["runAsNonRoot"] is False
            assert ctx["capabilities"]["add"] == ["IPC_LOCK", "SYS_RAWIO"]
        else:
            assert pod_ctx["runAsNonRoot"] is True and pod_ctx["runAsUser"] == 1000
            assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] == 1000
            assert "add" not in ctx["capabilities"]


# --- wide EP (DeepEP): the planner's output and what the chart requires --------------


def test_wide_ep_plan_enables_the_fabric_and_asks_for_root() -> None:
    plan = _wide_ep_plan()
    assert plan["engine"]["rdma"] == {"enabled": True}
    args = plan["engine"]["leader"]["args"]
    assert args[args.index("--all2all-backend") + 1] == "deepep_low_latency"
    # without the root opt-in the chart says what to set and why
    _refused(_values("wide-ep"), r"engine\.rdma\.runAsRoot: DeepEP .* IPC_LOCK and SYS_RAWIO")


def test_wide_ep_without_the_fabric_is_refused() -> None:
    values = _values("wide-ep", {"rdma": {"enabled": False}})
    _refused(values, r"engine\.rdma\.enabled: the engine args use DeepEP")


def test_wide_ep_with_fabric_and_root_renders_a_leaderworkerset() -> None:
    engine = {
        "rdma": {"runAsRoot": True, "networks": MULTUS,
                 "nvshmem": {"remoteTransport": "ibgda", "hcaPrefix": "ibp"}},
        "nccl": {"socketIfname": "eth0", "ibHca": "ibp"},
        "lws": {"exclusiveTopology": "topology.kubernetes.io/rack"},
        "runtimeClassName": "nvidia",
        "schedulerName": "volcano",
    }  # fmt: skip
    out = render(_values("wide-ep", engine))
    _validate(out)
    lws = out.one("LeaderWorkerSet")
    annotations = lws["metadata"]["annotations"]
    assert annotations["leaderworkerset.sigs.k8s.io/exclusive-topology"] == (
        "topology.kubernetes.io/rack"
    )
    for pod in _engine_pods(out):
        assert pod["spec"]["runtimeClassName"] == "nvidia"
        assert pod["spec"]["schedulerName"] == "volcano"
        container = _container(pod)
        env = _env(container)
        assert env["NVSHMEM_REMOTE_TRANSPORT"] == "ibgda"
        assert env["NVSHMEM_HCA_PREFIX"] == "ibp" and env["NCCL_IB_HCA"] == "ibp"
        assert env["NVSHMEM_BOOTSTRAP_UID_SOCK_IFNAME"] == "eth0"
        assert "'--all2all-backend' 'deepep_low_latency'" in container["args"][0]
        assert container["securityContext"]["runAsUser"] == 0
        assert container["securityContext"]["capabilities"]["add"] == ["IPC_LOCK", "SYS_RAWIO"]
        assert container["resources"]["limits"]["rdma/ib"] == 1


def test_wide_ep_passes_helm_lint_and_sovereign_mode() -> None:
    values = merge(_values("wide-ep", {"rdma": {"runAsRoot": True}}), {
        "sovereign": True,
        "global": {"imageRegistry": "registry.site.internal"},
        "engine": {"image": {"digest": DIGEST}},
        "gateway": {"image": {"digest": DIGEST}},
    })  # fmt: skip
    out = render(values)
    for pod in _engine_pods(out):
        assert _container(pod)["image"] == f"registry.site.internal/vllm/vllm-openai@{DIGEST}"
    report = helm_sdk().lint(str(CHART), values, strict=True)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    problems = [m for m in problems if "icon is recommended" not in m["error"]]
    assert not problems and not report["errors"], report


@pytest.mark.parametrize(
    "engine",
    [
        {"extraEnv": {"VLLM_ALL2ALL_BACKEND": "deepep_high_throughput"}},
        {"extraArgs": ["--all2all_backend=deepep_low_latency"]},
    ],
    ids=["legacy-env", "extra-args-underscore"],
)
def test_deepep_is_recognised_in_any_spelling(engine: dict[str, Any]) -> None:
    _refused(_values("lws", engine), r"engine\.rdma\.enabled: the engine args use DeepEP")
    render(_values("lws", {**engine, "rdma": {**RDMA_ON, "runAsRoot": True}}))


# --- other refusals ------------------------------------------------------------------


def test_capabilities_on_a_non_root_engine_are_refused() -> None:
    values = _values("deployment", {"capabilitiesAdd": ["IPC_LOCK"]})
    _refused(values, r"engine\.capabilitiesAdd: IPC_LOCK has no effect on the non-root engine")
    # with the opt-in they join DeepEP's
    out = render(_values("deployment", {"capabilitiesAdd": ["NET_RAW"],
                                        "rdma": {**RDMA_ON, "runAsRoot": True}}))  # fmt: skip
    (pod,) = _engine_pods(out)
    assert _container(pod)["securityContext"]["capabilities"]["add"] == [
        "IPC_LOCK", "SYS_RAWIO", "NET_RAW"
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("engine", "refused"),
    [
        ({"nccl": {"socketIfname": "net1"}}, "engine.nccl.socketIfname: net1"),
        ({"nccl": {"socketIfname": "eth0,ib0"}}, "engine.nccl.socketIfname: ib0"),
        ({"nccl": {"socketIfname": "=net2"}, "rdma": {"networks": MULTUS}},
         "engine.nccl.socketIfname: net2"),
        ({"rdma": {**RDMA_ON, "nvshmem": {"bootstrapIfname": "net1"}}},
         "engine.rdma.nvshmem.bootstrapIfname: net1"),
        ({"nccl": {"socketIfname": "eth0"}}, None),
        ({"nccl": {"socketIfname": "^docker,lo"}}, None),
        ({"nccl": {"socketIfname": "net1"}, "rdma": {"networks": MULTUS}}, None),
        ({"nccl": {"socketIfname": "net"}, "rdma": {"networks": MULTUS}}, None),
        ({"nccl": {"socketIfname": "ib0"},
          "rdma": {"networks": [{"name": "ipoib", "interface": "ib0"}]}}, None),
    ],
    ids=["net1-without-multus", "list-with-unattached", "exact-second-of-one",
         "nvshmem-bootstrap", "eth0", "exclusions", "net1-attached", "prefix-attached",
         "named-interface"],
)  # fmt: skip
def test_secondary_interfaces_need_a_multus_network(
    engine: dict[str, Any], refused: str | None
) -> None:
    values = _values("lws", engine)
    if refused is None:
        render(values)
        return
    _refused(values, refused.replace(".", r"\.") + r" is no interface of the engine pods")


def test_exclusive_topology_applies_to_the_leaderworkerset_only() -> None:
    engine = {"lws": {"exclusiveTopology": "kubernetes.io/hostname"}}
    one_node = render(_values("deployment", engine))
    assert not [
        o for o in one_node.objects if "annotations" in o["metadata"]
        and "leaderworkerset.sigs.k8s.io/exclusive-topology" in o["metadata"]["annotations"]
    ]  # fmt: skip
    lws = render(_values("lws", engine)).one("LeaderWorkerSet")
    annotation = lws["metadata"]["annotations"]["leaderworkerset.sigs.k8s.io/exclusive-topology"]
    assert annotation == "kubernetes.io/hostname"


def test_defaults_attach_nothing() -> None:
    out = render(_values("lws"))
    lws = out.one("LeaderWorkerSet")
    assert "annotations" not in lws["metadata"]
    for pod in _engine_pods(out):
        assert "annotations" not in pod["metadata"]
        assert "runtimeClassName" not in pod["spec"] and "schedulerName" not in pod["spec"]


@pytest.mark.parametrize(
    "engine",
    [
        {"rdma": {"resourceName": "ib"}},
        {"rdma": {"count": 0}},
        {"rdma": {"networks": [{"namespace": "x"}]}},
        {"rdma": {"networks": [{"name": "ib", "interface": "much-too-long-name"}]}},
        {"rdma": {"capabilities": ["ipc_lock"]}},
        {"rdma": {"nvshmem": {"ibgda": "yes"}}},
        {"capabilitiesAdd": ["IPC LOCK"]},
        {"lws": {"exclusiveTopology": "not a label"}},
        {"runtimeClassName": "Nvidia"},
        {"rdma": {"unknown": True}},
    ],
    ids=["resource-without-domain", "zero-count", "network-without-name", "long-interface",
         "lowercase-capability", "ibgda-not-bool", "capability-with-space", "bad-topology-key",
         "bad-runtime-class", "unknown-key"],
)  # fmt: skip
def test_schema_refuses_malformed_values(engine: dict[str, Any]) -> None:
    helm = helm_sdk()
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(helm.HelmError):
        chart.validate_schema(_values("deployment", engine))
