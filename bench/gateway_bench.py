"""Gateway overhead: the gateway (API-key identity, audit log on) in front of a fast
fake vLLM, against calling the fake directly.

Three processes on loopback: the fake upstream (uvicorn), the gateway (`appliance
serve`, SQLite audit store, as shipped), and this script's load generator (a raw
HTTP/1.1 keep-alive client on asyncio, so the client costs little CPU). Every phase is
bounded in request count and time. Results: bench/results/gateway-<UTC>.json and a
markdown table on stdout.

    .venv/bin/python bench/gateway_bench.py            # full run, about 2 minutes
    .venv/bin/python bench/gateway_bench.py --quick    # smoke run, about 30 s
    .venv/bin/python bench/gateway_bench.py --profile  # also profile the gateway (yappi)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from report import write_report  # noqa: E402

from tests.support.fake_vllm import SECRET  # noqa: E402
from tests.support.servers import free_port  # noqa: E402

CHAT = "/v1/chat/completions"
BODY = json.dumps({"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]})
STREAM_BODY = json.dumps(
    {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "stream": True}
)

FAKE_MAIN = """
import sys, uvicorn
sys.path.insert(0, {root!r})
from tests.support.fake_vllm import FakeState, create_fake_vllm
uvicorn.run(create_fake_vllm(FakeState()), host="127.0.0.1", port={port},
            log_level="warning", access_log=False)
"""


# -- a minimal HTTP/1.1 client ---------------------------------------------------------


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.used = time.monotonic()

    @classmethod
    async def open(cls, port: int) -> Conn:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def request(self, head: bytes, body: bytes) -> tuple[int, float | None]:
        """Send one POST; return (status, seconds to the first body byte for chunked
        answers). Reads the whole answer."""
        start = time.perf_counter()
        self.writer.write(head + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        status = int(raw[9:12])
        headers = raw.lower()
        first: float | None = None
        if b"transfer-encoding: chunked" in headers:
            while True:
                size = int((await self.reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
                data = await self.reader.readexactly(size + 2)
                if first is None and size:
                    first = time.perf_counter() - start
                if size == 0:
                    break
                del data
        else:
            marker = headers.index(b"content-length:") + 15
            length = int(headers[marker : headers.index(b"\r\n", marker)])
            await self.reader.readexactly(length)
        if b"connection: close" in headers:
            raise ConnectionResetError("server closed")
        self.used = time.monotonic()
        return status, first

    def close(self) -> None:
        self.writer.close()


def take_idle(idle: list[Conn]) -> Conn | None:
    """A pooled connection, skipping those idle long enough for uvicorn's keep-alive
    timeout (5 s) to have closed them."""
    while idle:
        conn = idle.pop()
        if time.monotonic() - conn.used < 4.0:
            return conn
        conn.close()
    return None


def request_head(port: int, token: str, body: str) -> bytes:
    return (
        f"POST {CHAT} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
        f"authorization: Bearer {token}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode()


@dataclass
class Phase:
    latencies: list[float] = field(default_factory=list)  # seconds, from the schedule
    ttft: list[float] = field(default_factory=list)
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    sent: int = 0
    wall: float = 0.0


async def run_sequential(port: int, token: str, body: str, count: int) -> Phase:
    head, data = request_head(port, token, body), body.encode()
    conn = await Conn.open(port)
    phase = Phase()
    begin = time.perf_counter()
    for _ in range(count):
        start = time.perf_counter()
        try:
            status, first = await conn.request(head, data)
        except (OSError, asyncio.IncompleteReadError):
            phase.errors += 1
            conn = await Conn.open(port)
            continue
        phase.latencies.append(time.perf_counter() - start)
        if first is not None:
            phase.ttft.append(first)
        if status != 200:
            phase.errors += 1
    phase.wall = time.perf_counter() - begin
    phase.sent = count
    conn.close()
    return phase


async def run_rate(
    port: int, token: str, body: str, rate: float, seconds: float, max_conns: int = 1024
) -> Phase:
    """Open loop: request i is due at i / rate; latency counts from when it was due,
    so a queue building up shows (no coordinated omission)."""
    head, data = request_head(port, token, body), body.encode()
    idle: list[Conn] = []
    opened = 0
    phase = Phase()
    total = int(rate * seconds)
    begin = time.perf_counter()
    tasks: list[asyncio.Task[None]] = []

    async def one(due: float) -> None:
        nonlocal opened
        conn = take_idle(idle)
        if conn is None:
            if opened >= max_conns:
                phase.errors += 1
                return
            opened += 1
            conn = await Conn.open(port)
        try:
            status, first = await conn.request(head, data)
        except (OSError, asyncio.IncompleteReadError):
            phase.errors += 1
            opened -= 1
            return
        phase.latencies.append(time.perf_counter() - due)
        if first is not None:
            phase.ttft.append(first)
        if status != 200:
            phase.errors += 1
            phase.statuses[status] = phase.statuses.get(status, 0) + 1
        idle.append(conn)

    for i in range(total):
        due = begin + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due)))
        if time.perf_counter() - begin > seconds * 3:  # hopelessly behind: stop offering
            break
    phase.sent = len(tasks)
    _done, pending = await asyncio.wait(tasks, timeout=30)
    phase.wall = time.perf_counter() - begin
    for task in pending:  # never left running into the next phase
        task.cancel()
        phase.errors += 1
    await asyncio.gather(*pending, return_exceptions=True)
    for conn in idle:
        conn.close()
    await asyncio.sleep(3)  # let the gateway drain what the client gave up on
    return phase


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def summary(phase: Phase) -> dict[str, Any]:
    done = len(phase.latencies)
    return {
        "requests": phase.sent,
        "completed": done,
        "errors": phase.errors,
        "error_statuses": phase.statuses,
        "achieved_rps": round(done / phase.wall, 1) if phase.wall else 0,
        "p50_ms": round(pct(phase.latencies, 0.50), 3),
        "p99_ms": round(pct(phase.latencies, 0.99), 3),
        "mean_ms": round(statistics.fmean(phase.latencies) * 1000, 3) if done else None,
        "ttft_p50_ms": round(pct(phase.ttft, 0.50), 3) if phase.ttft else None,
        "ttft_p99_ms": round(pct(phase.ttft, 0.99), 3) if phase.ttft else None,
    }


# -- the processes under test ----------------------------------------------------------


def wait_http(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
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


def prepare_gateway(work: Path, upstream_port: int) -> tuple[Path, int, str]:
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


async def measure(args: argparse.Namespace, fake_port: int, gw_port: int, key: str,
                  gateway: subprocess.Popen[bytes]) -> dict[str, Any]:  # fmt: skip
    targets = {"direct": (fake_port, SECRET), "gateway": (gw_port, key)}
    gw_proc = psutil.Process(gateway.pid)
    out: dict[str, Any] = {}
    # warm both paths (connections, caches, JIT-less Python's first-call costs)
    for port, token in targets.values():
        await run_sequential(port, token, BODY, 200)
        await run_sequential(port, token, STREAM_BODY, 50)

    for name, (port, token) in targets.items():
        cpu0 = sum(gw_proc.cpu_times()[:2])
        out[f"sequential_{name}"] = summary(
            await run_sequential(port, token, BODY, args.sequential)
        )
        if name == "gateway":
            cpu = sum(gw_proc.cpu_times()[:2]) - cpu0
            out["gateway_cpu_ms_per_request"] = round(cpu / args.sequential * 1000, 3)
        out[f"stream_{name}"] = summary(
            await run_sequential(port, token, STREAM_BODY, args.sequential // 2)
        )
        out[f"rate{args.rate}_{name}"] = summary(
            await run_rate(port, token, BODY, args.rate, args.seconds)
        )

    steps: list[dict[str, Any]] = []
    best = 0
    for rate in args.steps:
        result = summary(await run_rate(gw_port, key, BODY, rate, args.step_seconds))
        result["offered_rps"] = rate
        ok = (
            result["errors"] == 0
            and result["achieved_rps"] >= 0.97 * rate
            and result["p99_ms"] <= args.sustain_p99_ms
        )
        result["sustained"] = ok
        steps.append(result)
        print(f"  gateway at {rate}/s: {result}", flush=True)
        if not ok:
            break
        best = rate
    out["gateway_steps"] = steps
    out["gateway_max_sustained_rps"] = best
    return out


def added(results: dict[str, Any], phase: str, key: str) -> float:
    return round(results[f"{phase}_gateway"][key] - results[f"{phase}_direct"][key], 3)


def table(results: dict[str, Any], rate: int) -> str:
    rows = [
        ("sequential, added p50", added(results, "sequential", "p50_ms"), "ms", "15.8 ms"),
        ("sequential, added p99", added(results, "sequential", "p99_ms"), "ms", "20.4 ms"),
        (f"{rate} req/s, added p50", added(results, f"rate{rate}", "p50_ms"), "ms",
         "≤ 1 ms (goal)"),
        (f"{rate} req/s, added p99", added(results, f"rate{rate}", "p99_ms"), "ms",
         "≤ 5 ms (goal)"),
        ("streaming, added time to first byte p50", added(results, "stream", "ttft_p50_ms"),
         "ms", "14.6 ms"),
        ("gateway CPU per request", results["gateway_cpu_ms_per_request"], "ms", "~13 ms"),
        ("highest sustained rate (gateway)", results["gateway_max_sustained_rps"], "req/s",
         "60 req/s; goal ≥ 500"),
    ]  # fmt: skip
    lines = ["| what | ours | LiteLLM 1.110.2 / goal |", "|---|---|---|"]
    lines += [f"| {what} | **{value} {unit}** | {ref} |" for what, value, unit, ref in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--profile", action="store_true", help="profile the gateway (yappi, CPU clock)"
    )
    parser.add_argument(
        "--profile-out", type=Path, help="keep the profile (pstats) here; implies --profile"
    )
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--sustain-p99-ms", type=float, default=100.0)
    args = parser.parse_args()
    args.sequential = 300 if args.quick else 2000
    args.seconds = 3 if args.quick else 10
    args.step_seconds = 3 if args.quick else 6
    args.steps = [50, 100] if args.quick else [25, 50, 75, 100, 150, 200, 300, 400, 500, 600]

    with tempfile.TemporaryDirectory(prefix="gwbench-") as tmp:
        work = Path(tmp)
        fake, fake_port = start_fake(work)
        profile = work / "gateway.pstat"
        args.profile = args.profile or args.profile_out is not None
        try:
            config, gw_port, key = prepare_gateway(work, fake_port)
            gateway = start_gateway(work, config, gw_port)
            try:
                results = asyncio.run(measure(args, fake_port, gw_port, key, gateway))
            finally:
                stop(gateway)
            results["audit_entries"] = audit_count(work)
            if args.profile:
                # A separate run: the profiler's own cost must not touch the numbers above.
                gateway = start_gateway(work, config, gw_port, profile)
                try:
                    asyncio.run(run_sequential(gw_port, key, BODY, 200))  # warm-up
                    gateway.send_signal(signal.SIGUSR1)  # profile from here on
                    time.sleep(0.2)
                    asyncio.run(run_sequential(gw_port, key, BODY, args.sequential))
                finally:
                    stop(gateway)
                if profile.exists():
                    results["profile"] = summarise_profile(profile)
                    if args.profile_out is not None:
                        args.profile_out.write_bytes(profile.read_bytes())
        finally:
            stop(fake)

    path = write_report("gateway", "gateway-overhead", vars(args), results, quick=args.quick)
    print(json.dumps(results, indent=2))
    print(table(results, args.rate))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
