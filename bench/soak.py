"""Soak: moderate load on loopback for a bounded time (`make soak`).

The gateway (API key, SQLite audit log, as shipped) in front of the fast fake vLLM,
at SOAK_RATE requests/s (default 20: a fraction of what this 2-core machine sustains,
see docs/benchmarks.md) for SOAK_SECONDS (default 600), one in five streamed. Each
request carries its own X-Request-ID. Passes when: zero errors, the gateway's resident
memory grew by less than 10 % between the end of warm-up (60 s) and the end, `audit verify`
is green after a clean stop, and every request that got a 200 has its request and
completion records. Writes bench/results/soak-<UTC>.json; exits 1 on a failed goal.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gateway_bench as gb
from report import RESULTS

# Caches fill during the first minute (SQLAlchemy's compiled-statement cache, the
# connection pools, the allocator's arenas): growth is measured from there.
WARMUP_S = 60.0


async def drive(port: int, key: str, rate: float, seconds: float, proc: psutil.Process,
                ) -> dict[str, Any]:  # fmt: skip
    ok: list[str] = []
    errors: list[str] = []
    idle: list[gb.Conn] = []
    rss: list[tuple[float, int]] = []
    begin = time.perf_counter()
    total = int(rate * seconds)
    tasks: list[asyncio.Task[None]] = []

    async def one(i: int) -> None:
        body = gb.STREAM_BODY if i % 5 == 0 else gb.BODY
        request_id = uuid.uuid4().hex
        head = gb.request_head(port, key, body).replace(
            b"\r\n\r\n", f"\r\nx-request-id: {request_id}\r\n\r\n".encode(), 1
        )
        conn = gb.take_idle(idle) or await gb.Conn.open(port)
        try:
            status, _first = await asyncio.wait_for(conn.request(head, body.encode()), 30)
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            errors.append(f"{request_id}: {type(exc).__name__}")
            conn.close()
            return
        idle.append(conn)
        if status == 200:
            ok.append(request_id)
        else:
            errors.append(f"{request_id}: HTTP {status}")

    next_sample = begin
    for i in range(total):
        due = begin + i / rate
        now = time.perf_counter()
        if now >= next_sample:
            rss.append((round(now - begin, 1), proc.memory_info().rss))
            next_sample = now + 5
        if due > now:
            await asyncio.sleep(due - now)
        tasks.append(asyncio.create_task(one(i)))
        tasks = [t for t in tasks if not t.done()]
    if tasks:
        await asyncio.wait(tasks, timeout=60)
    rss.append((round(time.perf_counter() - begin, 1), proc.memory_info().rss))
    for conn in idle:
        conn.close()
    return {"ok": ok, "errors": errors, "rss": rss, "wall_s": time.perf_counter() - begin}


def main() -> int:
    seconds = float(os.environ.get("SOAK_SECONDS", "600"))
    rate = float(os.environ.get("SOAK_RATE", "20"))
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        work = Path(tmp)
        fake, fake_port = gb.start_fake(work)
        try:
            config, gw_port, key = gb.prepare_gateway(work, fake_port)
            gateway = gb.start_gateway(work, config, gw_port)
            try:
                run = asyncio.run(drive(gw_port, key, rate, seconds, psutil.Process(gateway.pid)))
            finally:
                gb.stop(gateway)
            verified, missing = check_log(config, run["ok"])
        finally:
            gb.stop(fake)

    warm = [bytes_ for at, bytes_ in run["rss"] if at >= min(WARMUP_S, seconds / 3)]
    growth = (run["rss"][-1][1] - warm[0]) / warm[0] if warm else 0.0
    result = {
        "duration_s": seconds,
        "rate_rps": rate,
        "requests_ok": len(run["ok"]),
        "errors": len(run["errors"]),
        "first_errors": run["errors"][:10],
        "rss_after_warmup_mib": round(warm[0] / 2**20, 1) if warm else None,
        "rss_end_mib": round(run["rss"][-1][1] / 2**20, 1),
        "rss_growth": round(growth, 4),
        "audit_verify": verified,
        "ok_without_records": missing,
    }
    passed = (
        result["errors"] == 0 and growth < 0.10 and verified == "green" and not missing
        and len(run["ok"]) > 0
    )  # fmt: skip
    result["passed"] = passed
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"soak-{stamp}.json"
    path.write_text(json.dumps({"benchmark": "soak", "when": stamp, "results": result,
                                "rss_samples": run["rss"]}, indent=2) + "\n")  # fmt: skip
    print(json.dumps(result, indent=2))
    print(f"wrote {path}")
    return 0 if passed else 1


def check_log(config: Path, ok: list[str]) -> tuple[str, list[str]]:
    from appliance.audit.store import SqlAuditStore
    from appliance.audit.verify import verify_log
    from appliance.audit.wiring import audit_verifier
    from appliance.config import load_settings
    from appliance.db import create_db_engine

    settings = load_settings(config)
    engine = create_db_engine(settings.database_url)
    store = SqlAuditStore(engine)
    try:
        verify_log(store, audit_verifier(settings), origin=settings.audit.origin)
        verified = "green"
    except Exception as exc:
        verified = f"failed: {exc}"
    missing = [
        rid for rid in ok
        if [r.event.value for r in store.by_request(rid)]
        != ["inference.request", "inference.completion"]
    ]  # fmt: skip
    engine.dispose()
    return verified, missing


if __name__ == "__main__":
    raise SystemExit(main())
