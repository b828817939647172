"""The load generator shared by the gateway benchmarks: a raw HTTP/1.1 keep-alive client
on asyncio (so the client costs little CPU), a closed-loop sequential phase and an
open-loop fixed-rate phase, and the summary of a phase. It knows nothing of what it
measures, so the fake engine, the gateway and LiteLLM are measured the same way."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BODY",
    "CHAT",
    "STREAM_BODY",
    "Conn",
    "Phase",
    "pct",
    "request_head",
    "run_rate",
    "run_sequential",
    "summary",
    "take_idle",
]

CHAT = "/v1/chat/completions"
BODY = json.dumps({"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]})
STREAM_BODY = json.dumps(
    {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "stream": True}
)


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
