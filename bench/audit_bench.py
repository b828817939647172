"""Audit log benchmarks (issue 4): append rate, verify time, inclusion proofs.

    python bench/audit_bench.py [--postgres URL] [--append N] [--verify N] [--proof-leaves N]

Writes bench/results/audit-<UTC time>.json and prints a Markdown table. Benchmarks,
not tests: numbers depend on the machine; docs/benchmarks.md records what was measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402

from appliance.audit.checkpoint import NoteSigner  # noqa: E402
from appliance.audit.keyring import SubjectKeyRing  # noqa: E402
from appliance.audit.log import AuditLog  # noqa: E402
from appliance.audit.merkle import MerkleTree, leaf_hash, verify_inclusion  # noqa: E402
from appliance.audit.records import AuditEvent, AuditRecord, Outcome  # noqa: E402
from appliance.audit.verify import verify_log  # noqa: E402
from appliance.audit.writer import GroupCommitWriter  # noqa: E402
from appliance.db import create_db_engine, upgrade_database  # noqa: E402
from appliance.keys.provider import FileKeyProvider  # noqa: E402

ORIGIN = "bench.local/audit"
PROMPT = "Summarise the attached quarterly report in three bullet points. " * 8  # ~0.5 KiB
START = datetime(2026, 1, 1, tzinfo=UTC)


def record(i: int) -> AuditRecord:
    return AuditRecord(
        record_id=str(uuid.uuid4()),
        recorded_at=START + timedelta(milliseconds=i),
        event=AuditEvent.COMPLETION,
        request_id=f"req-{i}",
        http_method="POST",
        path="/v1/chat/completions",
        status_code=200,
        outcome=Outcome.OK,
        subject=f"apikey:user{i % 50}",
        username=f"user{i % 50}",
        team="research",
        auth_method="api_key",
        key_id="k" * 12,
        client_addr="10.0.0.7",
        model="deepseek-v3",
        params={"temperature": 0.2, "max_tokens": 512, "stream": True},
        prompt_tokens=120,
        completion_tokens=480,
        latency_ms=2300,
        content={"messages": [{"role": "user", "content": PROMPT}], "response": [PROMPT]},
    )


def new_log(engine: Any, signer: NoteSigner, interval: float = 1.0) -> AuditLog:
    log = AuditLog(
        engine,
        keyring=SubjectKeyRing(engine, FileKeyProvider(os.urandom(32))),
        signer=signer,
        origin=ORIGIN,
        clock=lambda: datetime.now(UTC),
        checkpoint_interval_s=interval,
    )
    log.open()
    return log


def bench_append(engine: Any, count: int, concurrency: int) -> dict[str, Any]:
    """Sustained rate through the group-commit writer: `concurrency` callers, each
    awaiting its own durable commit, as gateway requests do."""
    log = new_log(engine, NoteSigner.generate(ORIGIN))
    writer = GroupCommitWriter(log, max_records=256, max_wait_ms=2.0, checkpoint_interval_s=1.0)
    records = [record(i) for i in range(count)]
    latencies: list[float] = []

    async def main() -> float:
        await writer.start()
        queue = list(reversed(records))

        async def caller() -> None:
            while queue:
                item = queue.pop()
                began = time.perf_counter()
                await writer.append(item)
                latencies.append(time.perf_counter() - began)

        began = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
        await writer.stop()
        return elapsed

    elapsed = asyncio.run(main())
    latencies.sort()
    return {
        "records": count,
        "concurrent_callers": concurrency,
        "seconds": round(elapsed, 3),
        "records_per_s": round(count / elapsed),
        "commit_latency_ms_p50": round(latencies[len(latencies) // 2] * 1000, 2),
        "commit_latency_ms_p99": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
    }


def populate(engine: Any, signer: NoteSigner, count: int) -> float:
    log = new_log(engine, signer, interval=3600)
    began = time.perf_counter()
    batch = 2000
    for start in range(0, count, batch):
        log.append_batch([record(i) for i in range(start, min(start + batch, count))])
        if (start // batch) % 10 == 9:
            log.checkpoint()
    log.checkpoint()
    return time.perf_counter() - began


def bench_verify(engine: Any, count: int, jobs: int) -> dict[str, Any]:
    signer = NoteSigner.generate(ORIGIN)
    populate_s = populate(engine, signer, count)
    from appliance.audit.store import SqlAuditStore

    result: dict[str, Any] = {"records": count, "populate_seconds": round(populate_s, 1)}
    for workers in sorted({1, jobs}):
        began = time.perf_counter()
        report = verify_log(SqlAuditStore(engine), signer.verifier(), origin=ORIGIN, jobs=workers)
        elapsed = time.perf_counter() - began
        assert report.records == count
        result[f"jobs_{workers}"] = {
            "verify_seconds": round(elapsed, 2),
            "verify_records_per_s": round(count / elapsed),
            "extrapolated_1m_seconds": round(elapsed * 1_000_000 / count, 1),
        }
    result["checkpoints"] = report.checkpoints
    return result


def bench_proofs(leaves: int, samples: int = 2000) -> dict[str, Any]:
    began = time.perf_counter()
    tree = MerkleTree(leaf_hash(i.to_bytes(8, "big")) for i in range(leaves))
    build_s = time.perf_counter() - began
    root = tree.root()
    indices = [secrets.randbelow(leaves) for _ in range(samples)]
    generate, check = [], []
    for index in indices:
        t0 = time.perf_counter()
        proof = tree.inclusion_proof(index)
        t1 = time.perf_counter()
        verify_inclusion(tree.leaf(index), index, leaves, proof.hashes, root)
        t2 = time.perf_counter()
        generate.append(t1 - t0)
        check.append(t2 - t1)
    return {
        "tree_size": leaves,
        "build_tree_seconds": round(build_s, 2),
        "proof_hashes": len(tree.inclusion_proof(0).hashes),
        "generate_us_median": round(statistics.median(generate) * 1e6, 1),
        "generate_us_p99": round(sorted(generate)[int(samples * 0.99)] * 1e6, 1),
        "verify_us_median": round(statistics.median(check) * 1e6, 1),
    }


def fresh_postgres(url: str) -> Any:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(url)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in url else "?"
    engine = create_db_engine(f"{url}{separator}options=-csearch_path%3D{schema}")
    upgrade_database(engine)
    return engine, admin, schema


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postgres", default=os.environ.get("APPLIANCE_BENCH_POSTGRES_URL"))
    parser.add_argument("--append", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--verify", type=int, default=100_000)
    parser.add_argument("--proof-leaves", type=int, default=1_000_000)
    parser.add_argument("--jobs", type=int, default=2, help="verify worker processes")
    args = parser.parse_args()
    results: dict[str, Any] = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
    }
    with tempfile.TemporaryDirectory() as tmp:
        engine = create_db_engine(f"sqlite:///{tmp}/append.db")
        upgrade_database(engine)
        results["append_sqlite"] = bench_append(engine, args.append, args.concurrency)
        print("append sqlite", results["append_sqlite"], flush=True)
        engine.dispose()
        if args.postgres:
            engine, admin, schema = fresh_postgres(args.postgres)
            results["append_postgresql"] = bench_append(engine, args.append, args.concurrency)
            print("append postgresql", results["append_postgresql"], flush=True)
            engine.dispose()
            with admin.begin() as connection:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        if args.verify:
            engine = create_db_engine(f"sqlite:///{tmp}/verify.db")
            upgrade_database(engine)
            results["verify_sqlite"] = bench_verify(engine, args.verify, args.jobs)
            print("verify sqlite", results["verify_sqlite"], flush=True)
            engine.dispose()
    results["inclusion_proof"] = bench_proofs(args.proof_leaves)
    print("proofs", results["inclusion_proof"], flush=True)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"audit-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
