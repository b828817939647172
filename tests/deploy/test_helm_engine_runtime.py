"""What the engine container needs to start in the image it is given: an identity
without a passwd entry (USER, LOGNAME, HOME, TORCHINDUCTOR_CACHE_DIR), the pod IP as
VLLM_HOST_IP across nodes, and a compile cache that can outlive the pod."""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.helm_render import Rendered, base_values, helm_sdk, merge, plan_values, render

IDENTITY_ENV = ("USER", "LOGNAME", "HOME", "TORCHINDUCTOR_CACHE_DIR", "VLLM_CACHE_ROOT")


def _values(profile: str, **override: Any) -> dict[str, Any]:
    return merge(merge(plan_values(profile), base_values()), override)


def engine_containers(out: Rendered) -> list[dict[str, Any]]:
    """Every engine container: the Deployment's, or the LeaderWorkerSet leader's and worker's."""
    found = []
    for owner, template in out.pod_templates():
        if owner["metadata"]["name"].endswith("-engine"):
            found += template["spec"]["containers"]
    assert found
    return found


def _pod_specs(out: Rendered) -> list[dict[str, Any]]:
    return [t["spec"] for o, t in out.pod_templates() if o["metadata"]["name"].endswith("-engine")]


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def _mounts(container: dict[str, Any]) -> dict[str, str]:
    return {m["mountPath"]: m["name"] for m in container["volumeMounts"]}


def _covered_by(path: str, mounts: dict[str, str]) -> str:
    """The volume a path lies on (longest mount path that prefixes it)."""
    best = max((m for m in mounts if path == m or path.startswith(m + "/")), key=len, default="")
    assert best, f"{path} is on the read-only root filesystem"
    return mounts[best]


@pytest.mark.parametrize("profile", ["dev-cpu", "deepseek-v3-1x8-h200", "deepseek-v3-2x8-h100"])
def test_every_engine_container_has_an_identity_without_passwd(profile: str) -> None:
    containers = engine_containers(render(_values(profile)))
    for container in containers:
        env = _env(container)
        for name in IDENTITY_ENV:
            assert isinstance(env.get(name), str) and env[name], (name, container["name"])
        mounts = _mounts(container)
        # Everything vLLM and torch write goes to a writable volume.
        for name in ("HOME", "TORCHINDUCTOR_CACHE_DIR", "VLLM_CACHE_ROOT", "TRITON_CACHE_DIR",
                     "CUDA_CACHE_PATH", "FLASHINFER_WORKSPACE_BASE"):  # fmt: skip
            assert _covered_by(env[name], mounts) in ("cache", "compile-cache"), name
        assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_values_cannot_unset_the_identity() -> None:
    values = _values("dev-cpu", engine={"extraEnv": {"USER": "", "HOME": "/"}})
    for container in engine_containers(render(values)):
        env = _env(container)
        assert env["USER"] == "vllm" and env["HOME"] == "/var/cache/vllm"


def test_multi_node_engines_take_vllm_host_ip_from_the_pod_ip() -> None:
    values = _values("deepseek-v3-2x8-h100", engine={"extraEnv": {"VLLM_HOST_IP": "10.0.0.1"}})
    containers = engine_containers(render(values))
    assert len(containers) == 2  # leader and worker
    for container in containers:
        names = [e["name"] for e in container["env"]]
        assert names.count("VLLM_HOST_IP") == 1
        assert _env(container)["VLLM_HOST_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}


def test_single_node_engine_keeps_vllm_host_ip_on_loopback() -> None:
    # Unset, vLLM would connect() a UDP socket towards 8.8.8.8 to find its address.
    for container in engine_containers(render(_values("deepseek-v3-1x8-h200"))):
        assert _env(container)["VLLM_HOST_IP"] == "127.0.0.1"


def _compile_volume(out: Rendered) -> list[dict[str, Any]]:
    return [v for spec in _pod_specs(out) for v in spec["volumes"] if v["name"] == "compile-cache"]


def test_compile_cache_defaults_to_an_empty_dir() -> None:
    out = render(_values("dev-cpu"))
    (volume,) = _compile_volume(out)
    assert volume["emptyDir"] == {"sizeLimit": "20Gi"}
    (container,) = engine_containers(out)
    env = _env(container)
    assert _mounts(container)["/var/cache/vllm-compile"] == "compile-cache"
    assert env["VLLM_CACHE_ROOT"] == "/var/cache/vllm-compile"
    assert env["TORCHINDUCTOR_CACHE_DIR"] == "/var/cache/vllm-compile/inductor"
    assert env["TRITON_CACHE_DIR"] == "/var/cache/vllm-compile/triton"


def test_compile_cache_on_a_claim_survives_restarts_on_every_node() -> None:
    values = _values(
        "deepseek-v3-2x8-h100", engine={"compileCache": {"existingClaim": "vllm-compile-cache"}}
    )
    out = render(values)
    volumes = _compile_volume(out)
    assert len(volumes) == 2  # leader and worker
    for volume in volumes:
        assert volume["persistentVolumeClaim"] == {"claimName": "vllm-compile-cache"}
    for container in engine_containers(out):
        assert _mounts(container)["/var/cache/vllm-compile"] == "compile-cache"


def test_compile_cache_on_a_host_path() -> None:
    values = _values("deepseek-v3-1x8-h200", engine={"compileCache": {"hostPath": "/var/lib/vc"}})
    (volume,) = _compile_volume(render(values))
    assert volume["hostPath"] == {"path": "/var/lib/vc", "type": "Directory"}


def test_compile_cache_off_keeps_kernels_in_the_scratch_cache() -> None:
    out = render(_values("dev-cpu", engine={"compileCache": {"enabled": False}}))
    assert not _compile_volume(out)
    (container,) = engine_containers(out)
    assert "/var/cache/vllm-compile" not in _mounts(container)
    env = _env(container)
    assert env["VLLM_CACHE_ROOT"] == "/var/cache/vllm"
    assert env["TORCHINDUCTOR_CACHE_DIR"] == "/var/cache/vllm/inductor"


def test_compile_cache_takes_one_source() -> None:
    helm = helm_sdk()
    values = _values(
        "dev-cpu", engine={"compileCache": {"existingClaim": "c", "hostPath": "/var/lib/vc"}}
    )
    with pytest.raises(helm.HelmError, match=r"engine\.compileCache: set only one"):
        render(values)
