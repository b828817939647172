"""Podman for the image tests: a private store under a temporary directory, the VM's
runtime settings from tests/deploy/containers.conf, helpers to run Python inside an
image that has no shell, and the `podman run` arguments that start a container of the
rendered Helm chart as the kubelet would (command, args, env, securityContext, volumes)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

__all__ = ["Podman", "copy_distributions", "kube_run_args"]

CONTAINERS_CONF = Path(__file__).with_name("containers.conf")
VENV_PYTHON = "/opt/appliance/venv/bin/python"


@dataclass(frozen=True)
class Podman:
    root: Path

    def command(self, *args: str) -> list[str]:
        return [
            "podman", "--root", str(self.root / "storage"), "--runroot", str(self.root / "run"),
            *args,
        ]  # fmt: skip

    def run(
        self, *args: str, check: bool = True, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            self.command(*args),
            env={**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)},
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        if check and done.returncode != 0:
            raise AssertionError(
                f"podman {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
            )
        return done

    def python(
        self, container: str, code: str, *, env: Sequence[str] = (), check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Python inside a running container (the gateway image has no shell)."""
        env_args = [arg for item in env for arg in ("--env", item)]
        return self.run("exec", *env_args, container, VENV_PYTHON, "-c", code, check=check)

    def logs(self, container: str) -> str:
        done = self.run("logs", container, check=False)
        return done.stdout + done.stderr

    def running(self, container: str) -> bool:
        done = self.run("inspect", container, "--format", "{{.State.Running}}", check=False)
        return done.stdout.strip() == "true"

    def wait_until(
        self, container: str, code: str, *, timeout_s: float, watch: Sequence[str] = ()
    ) -> float:
        """Run ``code`` in ``container`` until it exits 0; fail early when a watched
        container stops. Returns the seconds waited."""
        started = time.monotonic()
        while True:
            for name in (container, *watch):
                if not self.running(name):
                    raise AssertionError(f"{name} stopped:\n{self.logs(name)[-6000:]}")
            if self.python(container, code, check=False).returncode == 0:
                return time.monotonic() - started
            if time.monotonic() - started > timeout_s:
                logs = "\n".join(f"--- {n}\n{self.logs(n)[-4000:]}" for n in (container, *watch))
                raise AssertionError(f"not ready after {timeout_s:.0f} s:\n{logs}")
            time.sleep(5)

    def reset(self) -> None:
        self.run("system", "reset", "--force", check=False, timeout=300)


def copy_distributions(names: Sequence[str], out: Path) -> list[str]:
    """Copy installed distributions and their requirement closure (markers evaluated,
    no extras) from this interpreter's environment into ``out``: a read-only mount
    that a container appends to its sys.path."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        dist = importlib.metadata.distribution(name)
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
        for file in dist.files or []:
            source = Path(str(dist.locate_file(file)))
            if ".." in file.parts or "__pycache__" in file.parts:
                continue  # scripts outside site-packages, caches
            if source.is_file():
                target = out / file
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
    return sorted(seen)


_QUANTITY = re.compile(r"^(\d+)(Ki|Mi|Gi|Ti)?$")
_UNITS = {None: 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
# The container securityContext fields kube_run_args maps; any other fails the test, so
# a field the chart adds later is not silently dropped.
_SECURITY_FIELDS = {
    "allowPrivilegeEscalation", "capabilities", "privileged", "readOnlyRootFilesystem",
    "runAsGroup", "runAsNonRoot", "runAsUser", "seccompProfile",
}  # fmt: skip


def _bytes(quantity: str) -> int:
    match = _QUANTITY.match(quantity)
    assert match, f"unsupported quantity {quantity!r}"
    return int(match.group(1)) * _UNITS[match.group(2)]


def _security_args(context: Mapping[str, Any], pod_context: Mapping[str, Any]) -> list[str]:
    assert set(context) <= _SECURITY_FIELDS, set(context) - _SECURITY_FIELDS
    uid = context.get("runAsUser", pod_context.get("runAsUser"))
    gid = context.get("runAsGroup", pod_context.get("runAsGroup", uid))
    assert uid is not None and uid != 0 and context.get("runAsNonRoot"), context
    args = ["--user", f"{uid}:{gid}"]
    if "fsGroup" in pod_context:  # the kubelet adds it to the supplementary groups
        args += ["--group-add", str(pod_context["fsGroup"])]
    if context.get("readOnlyRootFilesystem"):
        args += ["--read-only", "--read-only-tmpfs=false"]  # no /tmp, /run of podman's
    if context.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    assert not context.get("privileged"), context
    capabilities = context.get("capabilities", {})
    args += [arg for cap in capabilities.get("drop", []) for arg in ("--cap-drop", cap)]
    args += [arg for cap in capabilities.get("add", []) for arg in ("--cap-add", cap)]
    seccomp = context.get("seccompProfile", {}).get("type", "RuntimeDefault")
    assert seccomp == "RuntimeDefault", seccomp  # podman's default profile
    return args


def _env_args(
    env: Sequence[Mapping[str, Any]], secrets: Mapping[tuple[str, str], str]
) -> list[str]:
    args: list[str] = []
    for item in env:
        if "value" in item:
            value = str(item["value"])
        else:
            ref = item["valueFrom"]["secretKeyRef"]  # fieldRef: multi-node only
            value = secrets[(ref["name"], ref["key"])]
        args += ["--env", f"{item['name']}={value}"]
    return args


def _volume_args(
    mounts: Sequence[Mapping[str, Any]],
    volumes: Sequence[Mapping[str, Any]],
    host_paths: Mapping[str, Path],
    scratch: Path,
) -> list[str]:
    """An emptyDir as the kubelet makes it: a new empty directory, mode 0777, on disk
    (a directory under ``scratch``, bound) or in memory (``medium: Memory``: a tmpfs of
    its sizeLimit). Not a podman tmpfs for the disk ones: podman gives a tmpfs over an
    image directory that directory's owner and mode (the image's 10001, 0750), which
    the chart's UID could not enter. Other volumes: the host directory in host_paths."""
    by_name = {volume["name"]: volume for volume in volumes}
    args: list[str] = []
    for mount in mounts:
        volume, path = by_name[mount["name"]], mount["mountPath"]
        if "emptyDir" in volume:
            assert not mount.get("readOnly"), mount
            empty_dir = volume["emptyDir"] or {}
            if empty_dir.get("medium") == "Memory":
                options = ["rw", "nosuid", "nodev", "mode=0777"]
                if "sizeLimit" in empty_dir:
                    options.append(f"size={_bytes(empty_dir['sizeLimit'])}")
                args += ["--tmpfs", f"{path}:{','.join(options)}"]
                continue
            source = scratch / mount["name"]
            source.mkdir(parents=True, exist_ok=True)
            source.chmod(0o777)
        else:
            source = host_paths[mount["name"]]  # KeyError: the test must name a host path
        args += ["--volume", f"{source}:{path}:{'ro' if mount.get('readOnly') else 'rw'}"]
    return args


def kube_run_args(
    container: Mapping[str, Any],
    pod_spec: Mapping[str, Any],
    *,
    secrets: Mapping[tuple[str, str], str],
    host_paths: Mapping[str, Path],
    scratch: Path,
    image: str | None = None,
) -> list[str]:
    """`podman run` options, image and arguments that start a rendered Kubernetes
    container as the kubelet would: ``command`` replaces the image's entrypoint and
    ``args`` its cmd; env with secretKeyRef values from ``secrets`` ((Secret, key) ->
    value); the container's securityContext (with the pod's fsGroup); every volumeMount
    (emptyDir under ``scratch`` or in memory, the rest from ``host_paths``). Like the
    kubelet, podman then adds no passwd entry for the UID, no tmpfs of its own on a
    read-only root and no volume for the image's VOLUMEs. Resources, probes and ports
    are left to the caller."""
    args = _security_args(container.get("securityContext", {}), pod_spec.get("securityContext", {}))
    args += _env_args(container.get("env", []), secrets)
    args += _volume_args(
        container.get("volumeMounts", []), pod_spec.get("volumes", []), host_paths, scratch
    )
    args += ["--passwd=false", "--image-volume=ignore"]
    if "workingDir" in container:
        args += ["--workdir", container["workingDir"]]
    if "command" in container:
        args += ["--entrypoint", json.dumps(container["command"])]
    return [*args, image or container["image"], *container.get("args", [])]
