"""Gateway overhead: the gateway (API-key identity, audit log on) and LiteLLM's proxy,
each in front of the same fast fake vLLM, against calling the fake directly.

Four processes on loopback: the fake upstream (uvicorn), the gateway (`appliance
serve`, SQLite audit store, as shipped), LiteLLM's proxy (from its own venv,
bench/litellm_venv.py; `--no-litellm` leaves it out) and this script's load generator
(bench/load_client.py). Every target gets the same phases from the same client; every
phase is bounded in request count and time. Results: bench/results/gateway-<UTC>.json
and a markdown table on stdout (bench/three_way.py).

    .venv/bin/python bench/gateway_bench.py               # full run, about 10 minutes
    .venv/bin/python bench/gateway_bench.py --quick       # smoke run, about 2 minutes
    .venv/bin/python bench/gateway_bench.py --no-litellm  # direct and gateway only
    .venv/bin/python bench/gateway_bench.py --profile     # also profile the gateway (yappi)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from litellm_proxy import HEALTH_PATH, start_litellm  # noqa: E402
from litellm_venv import LiteLLMUnavailable, ensure_litellm  # noqa: E402
from load_client import (  # noqa: E402  (bench/soak.py reaches them through this module)
    BODY,
    STREAM_BODY,
    Conn,
    request_head,
    run_rate,
    run_sequential,
    summary,
    take_idle,
)
from report import write_report  # noqa: E402
from three_way import markdown_table, sustained  # noqa: E402

from tests.support.fake_vllm import SECRET  # noqa: E402
from tests.support.servers import free_port  # noqa: E402

__all__ = [
    "BODY",
    "STREAM_BODY",
    "Conn",
    "prepare_gateway",
    "request_head",
    "start_fake",
    "start_gateway",
    "stop",
    "take_idle",
]  # fmt: skip

FAKE_MAIN = """
import sys, uvicorn
sys.path.insert(0, {root!r})
from tests.support.fake_vllm import FakeState, create_fake_vllm
uvicorn.run(create_fake_vllm(FakeState()), host="127.0.0.1", port={port},
            log_level="warning", access_log=False)
"""

# -- the processes under test ----------------------------------------------------------


def wait_http(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited: {log.read_text()[-2000:]}")
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not start")


def start_fake(work: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    log = work / "fake.log"
    process = subprocess.Popen(
        [sys.executable, "-c", FAKE_MAIN.format(root=str(ROOT), port=port)],
        stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    wait_http(f"http://127.0.0.1:{port}/health", process, log)
    return process, port


def prepare_gateway(
    work: Path, upstream_port: int, *, spool: bool = False
) -> tuple[Path, int, str]:
    """A gateway's config, port and API key in ``work``; ``spool``: audit.spool on."""
    from appliance.config import load_settings
    from appliance.db import create_db_engine, upgrade_database
    from appliance.gateway.services import utc_now
    from appliance.identity.apikeys import ApiKeyService
    from appliance.keys.deployment import deployment_secrets

    port = free_port()
    config = work / "appliance.yaml"
    upstream = f"http://127.0.0.1:{upstream_port}"
    config.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(work / "data"),
                "database": {"url": f"sqlite:///{work / 'gateway.db'}"},
                "engine": {"enabled": False, "api_key": SECRET},
                "gateway": {"port": port, "upstreams": [{"model": "fake-model", "url": upstream}]},
                "audit": {"spool": {"enabled": spool}},
            }
        )
    )
    settings = load_settings(config)
    engine = create_db_engine(settings.database_url)
    upgrade_database(engine)
    service = ApiKeyService(engine, deployment_secrets(settings).api_key_pepper)
    key = service.create(
        name="bench", owner="bench", roles=["appliance-user"], models=None, now=utc_now()
    ).secret
    engine.dispose()
    return config, port, key


def start_gateway(
    work: Path, config: Path, port: int, profile: Path | None = None
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    command = [sys.executable, "-m", "appliance.cli", "serve", "--config", str(config)]
    if profile is not None:  # the same server, profiling itself (bench/profiled_serve.py)
        command = [sys.executable, str(ROOT / "bench" / "profiled_serve.py"), str(profile),
                   "--config", str(config)]  # fmt: skip
    log = work / "gateway.log"
    process = subprocess.Popen(
        command, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env
    )  # fmt: skip
    wait_http(f"http://127.0.0.1:{port}/healthz", process, log)
    return process


# Where the time goes: each package's share of the gateway's own CPU time (yappi's
# self time per function, summed by package; start-up imports are left out).
def summarise_profile(pstat: Path) -> dict[str, Any]:
    import pstats
    from collections import Counter

    stats = pstats.Stats(str(pstat)).stats  # type: ignore[attr-defined]
    by_part: Counter[str] = Counter()
    for (filename, _line, name), (_cc, _nc, self_s, _cum, _callers) in stats.items():
        if "importlib" in filename or name in ("exec", "__build_class__", "compile"):
            continue  # start-up
        part = filename
        for marker in ("site-packages/", "python3.11/"):
            if marker in filename:
                part = filename.split(marker)[1].split("/")[0].removesuffix(".py")
                break
        else:
            if "/appliance/" in filename:
                part = "appliance/" + filename.split("/appliance/")[1]
            elif filename.startswith("builtins") or filename == "~":
                part = f"builtin {name}" if "sqlite3" in name or "commit" in name else "builtins"
        by_part[part] += self_s
    total = sum(by_part.values())
    top = by_part.most_common(25)
    return {
        "profiler": "yappi, CPU clock, all threads",
        "cpu_s": round(total, 2),
        "self_share": [(part, round(seconds / total, 3)) for part, seconds in top] if total else [],
    }


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def audit_count(work: Path) -> int:
    import sqlite3

    with sqlite3.connect(work / "gateway.db") as db:
        tables = [r[0] for r in db.execute("select name from sqlite_master where type='table'")]
        table = "audit_log" if "audit_log" in tables else tables[0]
        return int(db.execute(f"select count(*) from {table}").fetchone()[0])  # noqa: S608


# -- the run ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    port: int
    token: str
    process: subprocess.Popen[bytes] | None = None  # whose CPU per request is reported


def tree_cpu_s(process: psutil.Process) -> float:
    """User + system CPU seconds of a process and its live descendants (workers, helper
    processes), so a proxy that forks is charged for all of itself."""
    total = 0.0
    for proc in [process, *process.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


async def step_up(name: str, target: Target, args: argparse.Namespace) -> dict[str, Any]:
    """Offer each rate of args.steps in turn until one is not sustained."""
    steps: list[dict[str, Any]] = []
    best = 0
    for rate in args.steps:
        result = summary(await run_rate(target.port, target.token, BODY, rate, args.step_seconds))
        result["offered_rps"] = rate
        result["sustained"] = sustained(result, rate, args.sustain_p99_ms)
        steps.append(result)
        print(f"  {name} at {rate}/s: {result}", flush=True)
        if not result["sustained"]:
            break
        best = rate
    return {f"{name}_steps": steps, f"{name}_max_sustained_rps": best}


async def measure(args: argparse.Namespace, targets: dict[str, Target]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # warm every path (connections, caches, JIT-less Python's first-call costs)
    for target in targets.values():
        await run_sequential(target.port, target.token, BODY, 200)
        await run_sequential(target.port, target.token, STREAM_BODY, 50)

    for name, target in targets.items():
        port, token = target.port, target.token
        proc = psutil.Process(target.process.pid) if target.process else None
        cpu0 = tree_cpu_s(proc) if proc else 0.0
        out[f"sequential_{name}"] = summary(
            await run_sequential(port, token, BODY, args.sequential)
        )
        if proc is not None:
            cpu = tree_cpu_s(proc) - cpu0
            out[f"{name}_cpu_ms_per_request"] = round(cpu / args.sequential * 1000, 3)
        out[f"stream_{name}"] = summary(
            await run_sequential(port, token, STREAM_BODY, args.sequential // 2)
        )
        out[f"rate{args.rate}_{name}"] = summary(
            await run_rate(port, token, BODY, args.rate, args.seconds)
        )
        print(f"  {name}: sequential, streaming and {args.rate}/s done", flush=True)

    for name, target in targets.items():
        out.update(await step_up(name, target, args))
    return out


def install_litellm(args: argparse.Namespace) -> tuple[Path | None, dict[str, Any]]:
    """LiteLLM's executable, or None and why not: the bench goes on without it."""
    if not args.litellm:
        return None, {"skipped": "--no-litellm"}
    try:
        install = ensure_litellm()
    except (LiteLLMUnavailable, OSError, subprocess.CalledProcessError) as exc:
        print(f"LiteLLM left out of this run: {exc}", flush=True)
        return None, {"skipped": str(exc)[:2000]}
    info = {"version": install.version, "requested": install.requested,
            "deviations": list(install.deviations)}  # fmt: skip
    return install.executable, info


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--profile", action="store_true", help="profile the gateway (yappi, CPU clock)"
    )
    parser.add_argument(
        "--profile-out", type=Path, help="keep the profile (pstats) here; implies --profile"
    )
    parser.add_argument(
        "--no-litellm", dest="litellm", action="store_false",
        help="leave LiteLLM's proxy out (no install, two columns)",
    )  # fmt: skip
    parser.add_argument(
        "--no-spool", dest="spool", action="store_false",
        help="leave out the gateway with audit.spool on",
    )  # fmt: skip
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--sustain-p99-ms", type=float, default=100.0)
    args = parser.parse_args()
    args.sequential = 300 if args.quick else 2000
    args.seconds = 3 if args.quick else 10
    args.step_seconds = 3 if args.quick else 6
    args.steps = [50, 100] if args.quick else [25, 50, 75, 100, 150, 200, 300, 400, 500, 600]
    args.profile = args.profile or args.profile_out is not None
    return args


def profile_gateway(args: argparse.Namespace, work: Path, config: Path, gw_port: int,
                    key: str) -> dict[str, Any] | None:  # fmt: skip
    # A separate run: the profiler's own cost must not touch the measured numbers.
    profile = work / "gateway.pstat"
    gateway = start_gateway(work, config, gw_port, profile)
    try:
        asyncio.run(run_sequential(gw_port, key, BODY, 200))  # warm-up
        gateway.send_signal(signal.SIGUSR1)  # profile from here on
        time.sleep(0.2)
        asyncio.run(run_sequential(gw_port, key, BODY, args.sequential))
    finally:
        stop(gateway)
    if not profile.exists():
        return None
    if args.profile_out is not None:
        args.profile_out.write_bytes(profile.read_bytes())
    return summarise_profile(profile)


def main() -> None:
    args = parse_args()
    litellm, litellm_info = install_litellm(args)
    labels = {"direct": "direct (fake engine)", "gateway": "appliance gateway",
              "spool": "appliance, audit.spool",
              "litellm": f"LiteLLM {litellm_info.get('version', '')}"}  # fmt: skip
    started: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="gwbench-") as tmp:
        work = Path(tmp)
        try:
            fake, fake_port = start_fake(work)
            started.append(fake)
            config, gw_port, key = prepare_gateway(work, fake_port)
            gateway = start_gateway(work, config, gw_port)
            started.append(gateway)
            targets = {
                "direct": Target(fake_port, SECRET),
                "gateway": Target(gw_port, key, gateway),
            }
            if args.spool:  # the same gateway with audit.spool on (docs/audit.md)
                spool_work = work / "spool"
                spool_work.mkdir()
                spool_config, spool_port, spool_key = prepare_gateway(
                    spool_work, fake_port, spool=True
                )
                spooled = start_gateway(spool_work, spool_config, spool_port)
                started.append(spooled)
                targets["spool"] = Target(spool_port, spool_key, spooled)
            if litellm is not None:
                port = free_port()
                proxy, master_key = start_litellm(
                    litellm, work, f"http://127.0.0.1:{fake_port}", "fake-model", SECRET, port
                )  # fmt: skip
                started.append(proxy)
                try:  # LiteLLM's imports take tens of seconds on a busy 2-core machine.
                    wait_http(f"http://127.0.0.1:{port}{HEALTH_PATH}", proxy,
                              work / "litellm.log", timeout=300)  # fmt: skip
                    targets["litellm"] = Target(port, master_key, proxy)
                except RuntimeError as exc:  # a proxy that will not start: two columns
                    print(f"LiteLLM left out of this run: {exc}", flush=True)
                    litellm_info["skipped"] = str(exc)[:2000]
            results = asyncio.run(measure(args, targets))
            for process in reversed(started[1:]):
                stop(process)
            started = started[:1]
            results["audit_entries"] = audit_count(work)
            results["litellm"] = litellm_info
            if args.profile:
                results["profile"] = profile_gateway(args, work, config, gw_port, key)
        finally:
            for process in reversed(started):
                stop(process)

    path = write_report("gateway", "gateway-overhead", vars(args), results, quick=args.quick)
    print(json.dumps(results, indent=2))
    print(markdown_table(results, args.rate, args.sustain_p99_ms, list(targets), labels))
    for note in litellm_info.get("deviations", []):
        print(f"LiteLLM install: {note}")
    if "skipped" in litellm_info:
        print(f"LiteLLM not run: {litellm_info['skipped'][:300]}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
