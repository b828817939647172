"""Per-team LoRA adapters in the chart (engine.adapters, issue #16): off by default; when
on, the adapter store is mounted read-only at one path into the engine and the gateway
pods, the engine gets vLLM's LoRA flags, an init container verifies each adapter against
its manifest and the sha256 the values pin, and the gateway's settings find the
catalogue. The init container's script is run here against a real adapter store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from appliance.adapters import import_adapter
from appliance.config import Settings
from appliance.gateway.adapter_models import load_adapter_catalog
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
from tests.support.fake_adapters import DEV_BASE, write_adapter, write_base

ADAPTERS_DIR = "/var/lib/appliance/models/adapters"
SHA_A = "a" * 64
MODULES = [
    {"name": "legal-v1", "rank": 8, "manifestSha256": SHA_A},
    {"name": "hr", "rank": 12, "manifestSha256": "b" * 64},
]


def _values(adapters: dict[str, Any] | None = None, **override: Any) -> dict[str, Any]:
    values = merge(merge(plan_values("dev-cpu"), base_values()), override)
    if adapters is not None:
        values = merge(values, {"engine": {"adapters": adapters}})
    return values


def _engine_pod(out: Rendered) -> dict[str, Any]:
    spec: dict[str, Any] = out.one("Deployment", "appliance-engine")["spec"]["template"]["spec"]
    return spec


def _gateway_pod(out: Rendered) -> dict[str, Any]:
    spec: dict[str, Any] = out.one("Deployment", "-gateway")["spec"]["template"]["spec"]
    return spec


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container["env"]}


def _config(out: Rendered) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(out.one("ConfigMap", "-config")["data"]["appliance.yaml"])
    return data


def _validate(out: Rendered) -> None:
    import kubernetes_validate

    for obj in out.objects:
        # The LeaderWorkerSet's own schema is test_helm_chart's (tests/deploy/schemas).
        if obj["kind"] != "LeaderWorkerSet" and not obj["apiVersion"].startswith("k8s.keycloak"):
            kubernetes_validate.validate(obj, "1.33.0", strict=True)


def _lora_modules(script: str) -> list[dict[str, str]]:
    words = script.split(" '--lora-modules' ", 1)[1].split()
    return [json.loads(word.strip("'")) for word in words]


def test_off_by_default() -> None:
    out = render(_values())
    engine, gateway = _engine_pod(out), _gateway_pod(out)
    script = engine["containers"][0]["args"][0]
    assert "--enable-lora" not in script and "--lora-modules" not in script
    assert not engine.get("initContainers")
    for pod in (engine, gateway):
        assert "adapters" not in {v["name"] for v in pod["volumes"]}
    assert "VLLM_ALLOW_RUNTIME_LORA_UPDATING" not in _env(engine["containers"][0])
    assert "model_dir" not in _config(out)["engine"]


def test_engine_gets_the_lora_flags_and_the_store_read_only() -> None:
    out = render(_values({"enabled": True, "modules": MODULES}))
    engine = _engine_pod(out)
    vllm = engine["containers"][0]
    script = vllm["args"][0]
    assert "'--enable-lora' '--max-loras' '2' '--max-lora-rank' '16'" in script  # 12 -> 16
    assert _lora_modules(script) == [
        {
            "base_model_name": "smollm2-135m-instruct",
            "name": f"smollm2-135m-instruct:{name}",
            "path": f"{ADAPTERS_DIR}/{DEV_BASE}/{name}",
        }
        for name in ("legal-v1", "hr")
    ]
    # The weights volume at subPath adapters: one claim, mounted once per pod.
    (mount,) = [m for m in vllm["volumeMounts"] if m["mountPath"] == ADAPTERS_DIR]
    assert mount == {
        "name": "weights", "mountPath": ADAPTERS_DIR, "subPath": "adapters", "readOnly": True,
    }  # fmt: skip
    assert "adapters" not in {v["name"] for v in engine["volumes"]}
    (weights,) = [v for v in engine["volumes"] if v["name"] == "weights"]
    assert weights["persistentVolumeClaim"] == {"claimName": "model-store", "readOnly": True}
    (init,) = engine["initContainers"]
    assert [m["name"] for m in init["volumeMounts"] if m["mountPath"] == ADAPTERS_DIR] == [
        "weights"
    ]
    # Runtime loading stays off unless asked for.
    assert "VLLM_ALLOW_RUNTIME_LORA_UPDATING" not in _env(vllm)
    _assert_nothing_runs_as_root(out)
    _validate(out)


def test_runtime_only_slots_without_start_adapters() -> None:
    out = render(
        _values({"enabled": True, "maxLoraRank": 20, "maxLoras": 3, "runtimeUpdates": True})
    )
    engine = _engine_pod(out)
    script = engine["containers"][0]["args"][0]
    assert "'--enable-lora' '--max-loras' '3' '--max-lora-rank' '32'" in script
    assert "--lora-modules" not in script
    assert not engine.get("initContainers")  # nothing to verify at start
    assert _env(engine["containers"][0])["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"


def test_every_node_of_a_multi_node_engine_gets_the_same_flags() -> None:
    values = merge(merge(plan_values("deepseek-v3-2x8-h100"), base_values()), {})
    values = merge(values, {"engine": {"adapters": {"enabled": True, "modules": MODULES[:1]}}})
    out = render(values)
    lws = out.one("LeaderWorkerSet")["spec"]["leaderWorkerTemplate"]
    scripts = [
        lws[role]["spec"]["containers"][0]["args"][0]
        for role in ("leaderTemplate", "workerTemplate")
    ]
    _validate(out)
    for script in scripts:
        assert "'--max-loras' '1' '--max-lora-rank' '8'" in script
        assert [m["name"] for m in _lora_modules(script)] == ["deepseek-v3:legal-v1"]


def test_gateway_mounts_the_store_read_only_and_finds_the_catalogue(tmp_path: Path) -> None:
    out = render(_values({"enabled": True, "modules": MODULES, "runtimeUpdates": True}))
    gateway = _gateway_pod(out)
    (mount,) = [m for m in gateway["containers"][0]["volumeMounts"] if m["name"] == "adapters"]
    assert mount["readOnly"] is True and mount["mountPath"] == ADAPTERS_DIR
    (volume,) = [v for v in gateway["volumes"] if v["name"] == "adapters"]
    assert volume["persistentVolumeClaim"]["readOnly"] is True
    assert _env(_engine_pod(out)["containers"][0])["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    # The rendered settings, with the store where the pods mount it, list the adapter
    # under the name the engine's --lora-modules registers.
    config = _config(out)
    data_dir = tmp_path / "data"
    config["data_dir"] = str(data_dir)
    config["engine"]["model_dir"] = str(
        data_dir / "models" / Path(config["engine"]["model_dir"]).name
    )
    write_base(data_dir / "models")
    import_adapter(write_adapter(tmp_path / "src"), data_dir / "models", "legal-v1",
                   base=DEV_BASE, teams=["legal"], trust_source=True)  # fmt: skip
    catalog = load_adapter_catalog(Settings(**config))
    assert list(catalog.adapters) == ["smollm2-135m-instruct:legal-v1"]
    assert catalog.adapters["smollm2-135m-instruct:legal-v1"].teams == {"legal"}


def test_own_claim_or_host_path_for_the_store() -> None:
    out = render(_values({"enabled": True, "modules": MODULES, "existingClaim": "adapters"}))
    for pod in (_engine_pod(out), _gateway_pod(out)):
        (volume,) = [v for v in pod["volumes"] if v["name"] == "adapters"]
        assert volume["persistentVolumeClaim"] == {"claimName": "adapters", "readOnly": True}
        mounts = [
            m for c in pod["containers"] for m in c["volumeMounts"] if m["name"] == "adapters"
        ]
        assert mounts and all("subPath" not in m and m["readOnly"] for m in mounts)
    out = render(_values({"enabled": True, "modules": MODULES, "hostPath": "/srv/adapters"}))
    (volume,) = [v for v in _gateway_pod(out)["volumes"] if v["name"] == "adapters"]
    assert volume["hostPath"] == {"path": "/srv/adapters", "type": "Directory"}


def _init_script(out: Rendered) -> str:
    (init,) = _engine_pod(out)["initContainers"]
    assert init["name"] == "verify-adapters"
    assert init["image"] == _gateway_pod(out)["containers"][0]["image"]
    (mount,) = [m for m in init["volumeMounts"] if m["mountPath"] == ADAPTERS_DIR]
    assert mount["readOnly"] is True
    assert _env(init) == {"APPLIANCE_DATA_DIR": "/var/lib/appliance"}
    script: str = init["args"][0]
    return script


def _run(script: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    appliance = str(Path(sys.executable).parent / "appliance")
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    env["APPLIANCE_DATA_DIR"] = str(data_dir)
    env["PATH"] = f"{Path(appliance).parent}:{env.get('PATH', '')}"
    return subprocess.run(
        ["/bin/sh", "-ec", script], env=env, capture_output=True, text=True, timeout=120
    )


def test_init_container_verifies_each_adapter_against_the_pinned_sha256(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    write_base(data_dir / "models")
    stored = import_adapter(write_adapter(tmp_path / "src"), data_dir / "models", "legal-v1",
                            base=DEV_BASE, teams=["legal"], trust_source=True).adapter  # fmt: skip
    pinned = [{"name": "legal-v1", "rank": 8, "manifestSha256": stored.manifest_sha256}]
    good = _init_script(render(_values({"enabled": True, "modules": pinned})))
    ok = _run(good, data_dir)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert stored.manifest_sha256 in ok.stdout
    # Another sha256 than the approved one: the engine does not start.
    stale = _init_script(render(_values({"enabled": True, "modules": [
        {"name": "legal-v1", "rank": 8, "manifestSha256": SHA_A}]})))  # fmt: skip
    refused = _run(stale, data_dir)
    assert refused.returncode != 0 and "is not the expected" in refused.stdout + refused.stderr
    # A team added by hand changes the metadata the manifest covers.
    meta = stored.path / "appliance-adapter.json"
    meta.write_text(meta.read_text().replace('"legal"', '"legal", "sales"'))
    tampered = _run(good, data_dir)
    assert tampered.returncode != 0


@pytest.mark.parametrize(
    ("adapters", "message"),
    [
        ({"enabled": True}, "engine.adapters: list the adapters in modules"),
        ({"runtimeUpdates": True}, "engine.adapters.runtimeUpdates: only with"),
        ({"enabled": True, "modules": MODULES, "existingClaim": "a", "hostPath": "/a"},
         "set only one of existingClaim and hostPath"),
    ],
)  # fmt: skip
def test_refusals(adapters: dict[str, Any], message: str) -> None:
    helm = helm_sdk()
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(helm.HelmError) as failed:
        chart.render(_values(adapters), name="appliance", namespace="llm", is_install=True)
    assert message in str(failed.value)


@pytest.mark.parametrize(
    "bad",
    [
        {"modules": [{"name": "legal-v1", "rank": 8}]},
        {"modules": [{"name": "Legal", "rank": 8, "manifestSha256": SHA_A}]},
        {"modules": [{"name": "legal-v1", "rank": 1024, "manifestSha256": SHA_A}]},
        {"modules": [{"name": "legal-v1", "rank": 8, "manifestSha256": "abc"}]},
        {"unknown": True},
    ],
)
def test_schema_refuses_bad_adapter_values(bad: dict[str, Any]) -> None:
    helm = helm_sdk()
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(helm.HelmError):
        chart.validate_schema(_values({"enabled": True, **bad}))
