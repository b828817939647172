"""The engine as the planner planned it: a Deployment on one node, a LeaderWorkerSet
across nodes (leader serves HTTP, workers --headless with ranks from the LWS index)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from appliance.cli.main import app
from appliance.config import Settings
from tests.deploy.helm_render import base_values, helm_sdk, merge, plan_values, render

KUBE_VERSION = "1.33.0"


def _values(profile: str) -> tuple[dict[str, Any], dict[str, Any]]:
    plan = plan_values(profile)
    return plan["engine"], merge(plan, base_values())


def _container(pod: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod["spec"]["containers"]
    return container


def _volume(pod: dict[str, Any], name: str) -> dict[str, Any]:
    return next(v for v in pod["spec"]["volumes"] if v["name"] == name)


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "<ref>") for e in container["env"]}


def test_deepseek_v3_single_node_is_a_deployment_with_the_plan() -> None:
    plan, values = _values("deepseek-v3-1x8-h200")
    out = render(values)
    assert not out.of_kind("LeaderWorkerSet")
    deployment = out.one("Deployment", "-engine")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    pod = deployment["spec"]["template"]
    container = _container(pod)
    script = container["args"][0]
    assert "exec python3 -m vllm.entrypoints.cli.main serve '/models/deepseek-v3' " in script
    for arg in plan["leader"]["args"]:
        assert f"'{arg}'" in script
    assert "'--enable-expert-parallel'" in script and "--headless" not in script
    assert "--host 0.0.0.0 --port 8000" in script
    assert "find /dev/shm -mindepth 1 -type f -delete" in script
    resources = container["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == 8
    assert resources["requests"]["nvidia.com/gpu"] == 8
    assert resources["limits"]["memory"] == plan["resources"]["limits"]["memory"]
    assert _volume(pod, "dshm")["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"}
    assert _volume(pod, "weights")["persistentVolumeClaim"] == {
        "claimName": "model-store",
        "readOnly": True,
    }
    env = _env(container)
    assert "VLLM_USE_FLASHINFER_MOE_FP8" not in env  # gone in vLLM 0.32: --moe-backend
    assert "'--moe-backend' 'flashinfer_cutlass'" in container["args"][0]
    assert env["VLLM_API_KEY"] == "<ref>"
    startup = container["startupProbe"]
    assert startup["httpGet"]["path"] == "/health"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 45 * 60
    assert container["livenessProbe"]["periodSeconds"] == 30
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"


def test_deepseek_v3_two_nodes_is_a_leaderworkerset() -> None:
    plan, values = _values("deepseek-v3-2x8-h100")
    out = render(values)
    assert not [d for d in out.of_kind("Deployment") if d["metadata"]["name"].endswith("-engine")]
    lws = out.one("LeaderWorkerSet")
    spec = lws["spec"]
    assert spec["replicas"] == 1
    assert spec["leaderWorkerTemplate"]["size"] == 2
    assert spec["leaderWorkerTemplate"]["restartPolicy"] == "RecreateGroupOnPodRestart"
    leader = spec["leaderWorkerTemplate"]["leaderTemplate"]
    worker = spec["leaderWorkerTemplate"]["workerTemplate"]
    lead, work = _container(leader), _container(worker)
    assert leader["metadata"]["labels"]["appliance/engine-role"] == "leader"
    assert worker["metadata"]["labels"]["appliance/engine-role"] == "worker"
    lead_script, work_script = lead["args"][0], work["args"][0]
    for script in (lead_script, work_script):
        assert "<head-node-ip>" not in script
        assert "'--master-addr' \"${LWS_LEADER_ADDRESS}\"" in script
        assert "'--node-rank' \"${LWS_WORKER_INDEX:-0}\"" in script
        assert "'--nnodes' '2'" in script and "'--pipeline-parallel-size' '2'" in script
    assert "'--headless'" in work_script and "--headless" not in lead_script
    assert "--port 8000" in lead_script and "--port" not in work_script
    # only the leader serves HTTP and carries the HTTP probes
    assert "startupProbe" in lead and "startupProbe" not in work
    assert [p["name"] for p in lead["ports"]] == ["http", "dist", "dp-rpc"]
    for container in (lead, work):
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 8
    service = out.one("Service", "-engine")
    assert service["spec"]["selector"]["appliance/engine-role"] == "leader"
    assert plan["worker"]["replicas"] == 1


def test_multi_node_engines_talk_to_each_other_and_nothing_else() -> None:
    _, values = _values("deepseek-v3-2x8-h100")
    policy = render(values).one("NetworkPolicy", "-engine")
    engine_peer = {
        "podSelector": {
            "matchLabels": {
                "app.kubernetes.io/name": "appliance",
                "app.kubernetes.io/instance": "appliance",
                "app.kubernetes.io/component": "engine",
            }
        }
    }
    gateway_peer = {
        "podSelector": {
            "matchLabels": {
                **engine_peer["podSelector"]["matchLabels"],
                "app.kubernetes.io/component": "gateway",
            }
        }
    }
    (egress,) = policy["spec"]["egress"]
    assert egress["to"] == [engine_peer]
    assert {"protocol": "TCP", "port": 29501} in egress["ports"]
    ingress = policy["spec"]["ingress"]
    assert ingress[0] == {"from": [gateway_peer], "ports": [{"protocol": "TCP", "port": 8000}]}
    assert ingress[1]["from"] == [engine_peer]


def test_single_node_engine_has_no_egress_at_all() -> None:
    _, values = _values("deepseek-v3-1x8-h200")
    policy = render(values).one("NetworkPolicy", "-engine")
    assert policy["spec"]["egress"] == []
    assert len(policy["spec"]["ingress"]) == 1


def test_data_parallel_across_nodes_derives_start_rank_from_the_worker_index() -> None:
    # two 8-GPU nodes planned for throughput: DP16 + EP across the nodes (wide EP), which
    # needs the site's RDMA fabric and a root engine (tests/deploy/test_helm_rdma.py)
    result = CliRunner().invoke(
        app,
        [
            "plan",
            "-m",
            "deepseek-v3",
            "--gpu",
            "h200",
            "--gpus-per-node",
            "8",
            "--nodes",
            "2",
            "--goal",
            "throughput",
            "--fabric",
            "rdma",
            "-f",
            "helm-values",
        ],
    )
    assert result.exit_code == 0, result.output
    plan = yaml.safe_load(result.stdout)
    out = render(merge(merge(plan, base_values()), {"engine": {"rdma": {"runAsRoot": True}}}))
    lwt = out.one("LeaderWorkerSet")["spec"]["leaderWorkerTemplate"]
    work_script = _container(lwt["workerTemplate"])["args"][0]
    lead_script = _container(lwt["leaderTemplate"])["args"][0]
    # Kubernetes turns $$ into $, the shell then computes the rank
    assert "'--data-parallel-start-rank' \"$$(( ${LWS_WORKER_INDEX:-0} * 8 ))\"" in work_script
    assert "'--data-parallel-address' \"${LWS_LEADER_ADDRESS}\"" in work_script
    assert "'--api-server-count'" in lead_script


def test_cpu_dev_model_requests_no_gpu() -> None:
    _, values = _values("dev-cpu")
    container = _container(render(values).one("Deployment", "-engine")["spec"]["template"])
    assert not any(k.endswith("/gpu") for k in container["resources"]["limits"])
    assert _env(container)["VLLM_CPU_KVCACHE_SPACE"]


def test_host_path_weights_and_nccl_values() -> None:
    _, values = _values("deepseek-v3-2x8-h100")
    values = merge(
        values,
        {
            "engine": {
                "weights": {"existingClaim": "", "hostPath": "/srv/models"},
                "nccl": {
                    "socketIfname": "eth0",
                    "ibHca": "mlx5",
                    "ibGidIndex": "3",
                    "debug": "INFO",
                    "extraEnv": {"NVSHMEM_REMOTE_TRANSPORT": "ibgda"},
                },
            }
        },
    )
    lwt = render(values).one("LeaderWorkerSet")["spec"]["leaderWorkerTemplate"]
    for template in (lwt["leaderTemplate"], lwt["workerTemplate"]):
        assert _volume(template, "weights")["hostPath"] == {
            "path": "/srv/models",
            "type": "Directory",
        }
        env = _env(_container(template))
        assert env["NCCL_SOCKET_IFNAME"] == env["GLOO_SOCKET_IFNAME"] == "eth0"
        assert env["NCCL_IB_HCA"] == "mlx5" and env["NCCL_IB_GID_INDEX"] == "3"
        assert env["NCCL_DEBUG"] == "INFO" and env["NVSHMEM_REMOTE_TRANSPORT"] == "ibgda"


def test_engine_mutual_tls_from_existing_secrets() -> None:
    import kubernetes_validate

    _, values = _values("deepseek-v3-2x8-h100")
    values = merge(
        values,
        {
            "engine": {"tls": {"existingSecret": "engine-tls"}},
            "gateway": {"engineTls": {"existingSecret": "gateway-engine-client"}},
        },
    )
    out = render(values)
    lwt = out.one("LeaderWorkerSet")["spec"]["leaderWorkerTemplate"]
    leader, worker = lwt["leaderTemplate"], lwt["workerTemplate"]
    lead = _container(leader)
    script = lead["args"][0]
    tls_dir = "/var/run/appliance/engine-tls"
    assert (
        f"--ssl-keyfile {tls_dir}/tls.key --ssl-certfile {tls_dir}/tls.crt "
        f"--ssl-ca-certs {tls_dir}/ca.crt --ssl-cert-reqs 2"
    ) in script
    assert _volume(leader, "engine-tls")["secret"]["secretName"] == "engine-tls"
    assert {"name": "engine-tls", "mountPath": tls_dir, "readOnly": True} in lead["volumeMounts"]
    # The kubelet cannot present a client certificate: the probes run in the container.
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        command = lead[probe]["exec"]["command"]
        assert command[:2] == ["python3", "-c"]
        assert "load_cert_chain" in command[2] and "https://127.0.0.1:8000/health" in command[2]
    # Headless workers serve no HTTP: no certificate.
    assert "--ssl" not in _container(worker)["args"][0]
    assert not [v for v in worker["spec"]["volumes"] if v["name"] == "engine-tls"]

    gateway = out.one("Deployment", "-gateway")["spec"]["template"]
    assert _volume(gateway, "engine-tls")["secret"]["secretName"] == "gateway-engine-client"
    config = yaml.safe_load(out.one("ConfigMap", "-config")["data"]["appliance.yaml"])
    settings = Settings.model_validate(config)
    assert settings.gateway.upstreams[0].url == "https://appliance-engine:8000"
    assert str(settings.gateway.engine_tls.cert_file) == f"{tls_dir}/tls.crt"
    # The exec probes and secret volumes are valid Kubernetes.
    kubernetes_validate.validate(out.one("Deployment", "-gateway"), KUBE_VERSION, strict=True)
    leader_template = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"},
                       "template": leader}  # fmt: skip
    kubernetes_validate.validate(leader_template, KUBE_VERSION, strict=True)
    # Engine TLS without the gateway's client certificate would lock the gateway out.
    values["gateway"]["engineTls"]["existingSecret"] = ""
    helm = helm_sdk()
    with pytest.raises(helm.HelmError, match=r"gateway\.engineTls\.existingSecret"):
        render(values)
