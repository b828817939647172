"""The embedding engine in the chart (embeddingEngine, issue #16): off by default; when
on, a second vLLM Deployment with the pooling runner, offline and non-root like the chat
engine, a Service, an upstream of kind embedding in the gateway's settings, and a
NetworkPolicy that lets only the gateway reach it."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from appliance.config import Settings
from appliance.engine.launch import OFFLINE_ENV, Pooling
from tests.deploy.helm_render import (
    CHART,
    Rendered,
    base_values,
    helm_sdk,
    merge,
    plan_values,
    render,
)
from tests.deploy.test_helm_chart import test_nothing_runs_as_root as _assert_nothing_runs_as_root

NAME = "appliance-embedding-engine"


def _values(**embedding: Any) -> dict[str, Any]:
    values = merge(plan_values("dev-cpu"), base_values())
    return merge(values, {"embeddingEngine": embedding}) if embedding else values


def _named(out: Rendered, kind: str) -> list[dict[str, Any]]:
    return [o for o in out.of_kind(kind) if o["metadata"]["name"] == NAME]


def _settings(out: Rendered) -> Settings:
    data = yaml.safe_load(out.one("ConfigMap", "-config")["data"]["appliance.yaml"])
    return Settings(**data)


def _validate(out: Rendered) -> None:
    import kubernetes_validate

    for obj in out.objects:
        if not obj["apiVersion"].startswith("k8s.keycloak.org/"):
            kubernetes_validate.validate(obj, "1.33.0", strict=True)


def _gateway_egress_to(out: Rendered, component: str) -> list[dict[str, Any]]:
    policy = out.one("NetworkPolicy", "-gateway")
    return [
        rule
        for rule in policy["spec"]["egress"]
        for peer in rule.get("to", [])
        if peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component")
        == component
    ]


def test_off_by_default() -> None:
    out = render(_values())
    for kind in ("Deployment", "Service", "NetworkPolicy"):
        assert not _named(out, kind)
    assert not _gateway_egress_to(out, "embedding-engine")
    (upstream,) = _settings(out).effective_upstreams()
    assert upstream.kind == "chat"


def test_enabled_runs_the_pooling_runner_offline_and_non_root() -> None:
    out = render(_values(enabled=True))
    (deployment,) = _named(out, "Deployment")
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "embedding-engine"
    (vllm,) = pod["spec"]["containers"]
    argv = vllm["command"] + vllm["args"]
    assert argv[:5] == [
        "python3", "-m", "vllm.entrypoints.cli.main", "serve", "/models/smollm2-135m-instruct",
    ]  # fmt: skip
    # The same pooling flags `appliance up` gives its embedding engine.
    pooling = Pooling(convert="embed", pooling_type="LAST", normalize=True).args()
    start = argv.index("--runner")
    assert argv[start : start + len(pooling) - 1] == pooling[:-1]
    assert json.loads(argv[start + len(pooling) - 1]) == json.loads(pooling[-1])
    for flag, value in (("--served-model-name", "smollm2-135m-embed"), ("--max-model-len", "512"),
                        ("--dtype", "float32"), ("--port", "8000")):  # fmt: skip
        assert argv[argv.index(flag) + 1] == value
    env = {e["name"]: e for e in vllm["env"]}
    for name, value in OFFLINE_ENV.items():
        assert env[name]["value"] == value
    assert env["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "appliance-secrets"
    (weights,) = [m for m in vllm["volumeMounts"] if m["name"] == "weights"]
    assert weights["readOnly"] is True
    (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == "weights"]
    assert volume["persistentVolumeClaim"] == {"claimName": "model-store", "readOnly": True}
    (service,) = _named(out, "Service")
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "embedding-engine"
    # The chat engine's Service does not pick the embedding pods up.
    chat = out.one("Service", "appliance-engine")
    assert chat["spec"]["selector"]["app.kubernetes.io/component"] == "engine"
    _assert_nothing_runs_as_root(out)
    _validate(out)


def test_gateway_routes_it_as_an_embedding_upstream() -> None:
    out = render(_values(enabled=True, model={"servedModelName": "bge-small"}))
    routes = {u.model: (u.url, u.kind) for u in _settings(out).effective_upstreams()}
    assert routes == {
        "smollm2-135m-instruct": ("http://appliance-engine:8000", "chat"),
        "bge-small": (f"http://{NAME}:8000", "embedding"),
    }
    assert _settings(out).embedding_engine_enabled is False  # the gateway starts no engine


def test_only_the_gateway_reaches_it() -> None:
    out = render(_values(enabled=True))
    (policy,) = _named(out, "NetworkPolicy")
    spec = policy["spec"]
    assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "embedding-engine"
    assert spec["egress"] == []
    (rule,) = spec["ingress"]
    assert rule["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "gateway"
    assert rule["ports"] == [{"protocol": "TCP", "port": 8000}]
    (egress,) = _gateway_egress_to(out, "embedding-engine")
    assert egress["ports"] == [{"protocol": "TCP", "port": 8000}]


def test_gpu_model_with_its_own_pooling_and_tls() -> None:
    out = render(
        merge(
            _values(
                enabled=True,
                device="gpu",
                convert="none",
                pooling="CLS",
                normalize=False,
                gpuMemoryUtilization=0.08,
                model={"servedModelName": "bge", "path": "/models/bge"},
                resources={"limits": {"nvidia.com/gpu": 1, "memory": "8Gi"}},
            ),
            {
                "engine": {"tls": {"existingSecret": "engine-tls"}},
                "gateway": {"engineTls": {"existingSecret": "gw-tls"}},
            },
        )
    )
    (deployment,) = _named(out, "Deployment")
    (vllm,) = deployment["spec"]["template"]["spec"]["containers"]
    args = vllm["args"]
    assert "--convert" not in args
    assert (
        args[args.index("--pooler-config") + 1] == '{"pooling_type":"CLS","use_activation":false}'
    )
    assert args[args.index("--gpu-memory-utilization") + 1] == "0.08"
    assert args[args.index("--dtype") + 1] == "auto"
    assert args[args.index("--ssl-cert-reqs") + 1] == "2"
    assert vllm["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert "VLLM_CPU_KVCACHE_SPACE" not in {e["name"] for e in vllm["env"]}
    routes = {u.model: u.url for u in _settings(out).effective_upstreams()}
    assert routes["bge"] == f"https://{NAME}:8000"


@pytest.mark.parametrize(
    ("embedding", "message"),
    [
        ({"model": {"servedModelName": "smollm2-135m-instruct"}}, "the chat engine's name"),
        ({"model": {"path": "/elsewhere/bge"}}, "is not under engine.weights.mountPath"),
    ],
)
def test_refusals(embedding: dict[str, Any], message: str) -> None:
    helm = helm_sdk()
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(helm.HelmError) as failed:
        chart.render(_values(enabled=True, **embedding), name="appliance", namespace="llm",
                     is_install=True)  # fmt: skip
    assert message in str(failed.value)


@pytest.mark.parametrize(
    "bad",
    [{"pooling": "MAX"}, {"convert": "classify"}, {"device": "tpu"}, {"surprise": 1}],
)
def test_schema_refuses_bad_values(bad: dict[str, Any]) -> None:
    helm = helm_sdk()
    from helm_python.errors import HelmValuesError

    with helm.Chart.load(str(CHART)) as chart, pytest.raises(HelmValuesError):
        chart.validate_schema(_values(enabled=True, **bad))


def test_helm_lint_is_clean_with_adapters_and_embedding_engine() -> None:
    helm = helm_sdk()
    values = merge(
        _values(enabled=True),
        {"engine": {"adapters": {"enabled": True, "runtimeUpdates": True,
                                 "modules": [{"name": "legal-v1", "rank": 8,
                                              "manifestSha256": "a" * 64}]}}},
    )  # fmt: skip
    report = helm.lint(str(CHART), values, strict=True)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    problems = [m for m in problems if "icon is recommended" not in m["error"]]
    assert not problems and not report["errors"], report
