"""Where one request's CPU goes: the gateway app in this process (no uvicorn, no
sockets on the client side), driven straight through ASGI with non-streaming chat
completions, an API key and the SQLite audit log on, in front of the fake vLLM in its
own process (tests/support/fake_vllm.py, so its CPU is not counted).

    .venv/bin/python bench/profile_request.py            # 2,000 requests, table
    .venv/bin/python bench/profile_request.py -n 3000 --json out.json
    .venv/bin/python bench/profile_request.py --path /v1/completions

Two passes over the same warm app: first plain (CPU per request from
``time.process_time()``: every thread of this process, the audit writer's included),
then under yappi (CPU clock, all threads, builtins) for the per-layer split, each
function's own time put in the layer its module belongs to. The ASGI driver's own cost
(building scopes, collecting the answer) is measured against a no-op app and taken off.
uvicorn's HTTP parsing is not in it: ``bench/gateway_bench.py`` measures the whole
server process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from gateway_bench import prepare_gateway, start_fake, stop  # noqa: E402

__all__ = ["LAYERS", "layer_of", "main"]

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]

# A module's layer: the first matching fragment of its file name wins (so the
# specific appliance modules come before the catch-all packages).
LAYERS: tuple[tuple[str, str], ...] = (
    ("/appliance/gateway/middleware.py", "middleware (request id, 500s, header limit)"),
    ("/appliance/gateway/tls.py", "middleware (request id, 500s, header limit)"),
    ("/starlette/middleware/", "middleware (request id, 500s, header limit)"),
    ("/appliance/gateway/deps.py", "identity (API key, cached)"),
    ("/appliance/identity/", "identity (API key, cached)"),
    ("/appliance/gateway/body.py", "request body: read, JSON parse, limits"),
    ("/appliance/gateway/json_guard.py", "request body: read, JSON parse, limits"),
    ("/appliance/gateway/schemas.py", "validation (pydantic request model)"),
    ("/appliance/limits/", "limits"),
    ("/appliance/telemetry/", "telemetry (OpenTelemetry span, Prometheus)"),
    ("/opentelemetry/", "telemetry (OpenTelemetry span, Prometheus)"),
    ("/prometheus_client/", "telemetry (OpenTelemetry span, Prometheus)"),
    ("/appliance/audit/store.py", "audit: append + commit (writer, SQLAlchemy, SQLite)"),
    ("/appliance/audit/log.py", "audit: append + commit (writer, SQLAlchemy, SQLite)"),
    ("/appliance/audit/writer.py", "audit: append + commit (writer, SQLAlchemy, SQLite)"),
    ("/appliance/audit/spool", "audit: append + commit (writer, SQLAlchemy, SQLite)"),
    ("/appliance/audit/sink.py", "audit: append + commit (writer, SQLAlchemy, SQLite)"),
    ("/appliance/audit/wiring.py", "audit: append + commit (writer, SQLAlchemy, SQLite)"),
    ("/sqlalchemy/", "audit: append + commit (writer, SQLAlchemy, SQLite)"),
    ("/appliance/gateway/auditing.py", "audit: record build, seal, receipt"),
    ("/appliance/gateway/receipting.py", "audit: record build, seal, receipt"),
    ("/appliance/gateway/answers.py", "audit: record build, seal, receipt"),
    ("/appliance/audit/", "audit: record build, seal, receipt"),
    ("/appliance/gateway/upstream.py", "engine client (aiohttp)"),
    ("/appliance/gateway/pool.py", "engine client (aiohttp)"),
    ("/aiohttp/", "engine client (aiohttp)"),
    ("/yarl/", "engine client (aiohttp)"),
    ("/multidict/", "engine client (aiohttp)"),
    ("/fastapi/", "routing + dependency injection (FastAPI/Starlette)"),
    ("/starlette/", "routing + dependency injection (FastAPI/Starlette)"),
    ("/anyio/", "event loop, thread hops (asyncio, anyio)"),
    ("/asyncio/", "event loop, thread hops (asyncio, anyio)"),
    ("/uvloop/", "event loop, thread hops (asyncio, anyio)"),
    ("/threading.py", "event loop, thread hops (asyncio, anyio)"),
    ("/concurrent/", "event loop, thread hops (asyncio, anyio)"),
    ("/queue.py", "event loop, thread hops (asyncio, anyio)"),
    ("/appliance/gateway/", "relay, proxy, routes (our code)"),
    ("/appliance/", "other appliance code"),
)
# Builtins reached from C only (event-loop callbacks, thread starts): by what they are.
_BUILTINS: tuple[tuple[str, str], ...] = (
    ("sqlite3", "audit: append + commit (writer, SQLAlchemy, SQLite)"),
    ("_thread", "event loop, thread hops (asyncio, anyio)"),
    ("select", "event loop, thread hops (asyncio, anyio)"),
    ("_asyncio", "event loop, thread hops (asyncio, anyio)"),
    ("uvloop", "event loop, thread hops (asyncio, anyio)"),
)

_DRIVER = "ASGI driver (this script; taken off)"


# Code that works for whoever calls it: its own time goes to its callers' layers, in
# proportion to the time each call edge took (so SQLAlchemy under the audit writer is
# audit, under the API-key lookup identity; json.dumps under the record builder is the
# record's).
_SHARED = (
    "/sqlalchemy/", "/json/", "/re/", "/enum.py", "/typing.py", "/dataclasses.py",
    "/uuid.py", "/weakref.py", "/functools.py", "/contextlib.py", "/copy.py", "/abc.py",
    "/datetime.py", "/sniffio/", "/pydantic/", "/cryptography/", "/hmac.py", "/base64.py",
    "/collections/", "/_collections_abc.py", "/contextvars", "/inspect.py",
)  # fmt: skip


def _is_shared(stat: Any) -> bool:
    return (
        bool(stat.builtin)
        or "/" not in stat.module
        or any(fragment in stat.module for fragment in _SHARED)
    )


def _attribute(stats: Any) -> tuple[Counter[str], Counter[str]]:
    """Each function's own time to a layer: its module's, or for shared code (builtins,
    SQLAlchemy, json...) its callers' layers, weighted by call-edge time."""
    by_index = {stat.index: stat for stat in stats}
    callers: dict[int, list[tuple[int, float]]] = {}
    for stat in stats:
        for child in stat.children:
            callers.setdefault(child.index, []).append((stat.index, child.ttot))
    weights: dict[int, dict[str, float]] = {}

    def weigh(index: int, seen: frozenset[int]) -> dict[str, float]:
        if index in weights:
            return weights[index]
        stat = by_index[index]
        edges = [(c, t) for c, t in callers.get(index, []) if c not in seen and c != index]
        if not _is_shared(stat) or not edges or sum(t for _c, t in edges) <= 0:
            result = {layer_of(stat.module, stat.name): 1.0}
        else:
            total = sum(t for _c, t in edges)
            result = {}
            for caller, spent in edges:
                for layer, share in weigh(caller, seen | {index}).items():
                    result[layer] = result.get(layer, 0.0) + share * spent / total
        weights[index] = result  # a cycle's back edge is left out: close enough
        return result

    by_layer: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    for stat in stats:
        for layer, share in weigh(stat.index, frozenset()).items():
            by_layer[layer] += stat.tsub * share
            functions[f"{layer} | {_short(stat.module)}:{stat.name}"] += stat.tsub * share
    return by_layer, functions


def _short(module: str) -> str:
    for marker in ("site-packages/", "python3.11/", "/work/main/"):
        module = module.split(marker)[-1]
    return module


def layer_of(filename: str, name: str) -> str:
    if filename.endswith("bench/profile_request.py"):
        return _DRIVER
    for fragment, layer in LAYERS:
        if fragment in filename:
            return layer
    if "/" not in filename:  # a builtin
        lowered = f"{filename} {name}".lower()
        for fragment, layer in _BUILTINS:
            if fragment in lowered:
                return layer
        return "builtins (unattributed)"
    return "other libraries"


class Driver:
    """One POST through an ASGI app, as uvicorn would hand it over."""

    def __init__(self, app: ASGIApp, path: str, key: str, body: bytes):
        self.app = app
        self.path = path
        self.body = body
        self.headers = [
            (b"host", b"127.0.0.1"),
            (b"authorization", f"Bearer {key}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]

    async def post(self) -> tuple[int, bytes]:
        scope = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1", "method": "POST", "scheme": "http",
            "path": self.path, "raw_path": self.path.encode(), "root_path": "",
            "query_string": b"", "headers": list(self.headers),
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
            "state": {},
        }  # fmt: skip
        sent = False
        status = 0
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": self.body, "more_body": False}
            await asyncio.Event().wait()  # the client stays connected
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        return status, b"".join(chunks)


async def _noop_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def _cpu_per_request(driver: Driver, count: int) -> float:
    """Milliseconds of process CPU (all threads) per request over ``count`` requests."""
    started = time.process_time()
    for _ in range(count):
        status, answer = await driver.post()
        if status != 200:
            raise RuntimeError(f"status {status}: {answer[:300]!r}")
    return (time.process_time() - started) * 1000 / count


async def _run(args: argparse.Namespace, config: Path, key: str) -> dict[str, Any]:
    import yappi

    from appliance.config import load_settings
    from appliance.gateway.app import create_app

    settings = load_settings(config)
    if args.trace_sample_ratio is not None:
        telemetry = settings.telemetry.model_copy(
            update={"trace_sample_ratio": args.trace_sample_ratio}
        )
        settings = settings.model_copy(update={"telemetry": telemetry})
    app = create_app(settings)
    body = json.dumps(
        {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}
        if args.path.endswith("/chat/completions")
        else {"model": "fake-model", "prompt": "hi"}
    ).encode()
    driver = Driver(app, args.path, key, body)
    baseline = Driver(_noop_app, args.path, key, body)
    async with app.router.lifespan_context(app):
        await _cpu_per_request(driver, args.warmup)
        driver_ms = await _cpu_per_request(baseline, args.requests)
        plain = [await _cpu_per_request(driver, args.requests) for _ in range(args.rounds)]
        if args.no_profile:
            return {"path": args.path, "requests": args.requests,
                    "cpu_ms_per_request": [round(ms - driver_ms, 3) for ms in plain],
                    "driver_ms_per_request": round(driver_ms, 3)}  # fmt: skip
        yappi.set_clock_type("cpu")
        yappi.start(builtins=True)
        await _cpu_per_request(driver, args.requests)
        yappi.stop()
    by_layer, functions = _attribute(yappi.get_func_stats())
    yappi.clear_stats()
    by_layer.pop(_DRIVER, None)
    total = sum(by_layer.values())
    gateway_ms = [round(ms - driver_ms, 3) for ms in plain]
    return {
        "path": args.path,
        "requests": args.requests,
        "cpu_ms_per_request": gateway_ms,
        "driver_ms_per_request": round(driver_ms, 3),
        "profiled_ms_per_request": round(total * 1000 / args.requests, 3),
        "top_functions_ms": {
            name: round(seconds * 1000 / args.requests, 4)
            for name, seconds in functions.most_common(args.top)
        },
        "layers_ms": {
            layer: round(seconds * 1000 / args.requests, 3)
            for layer, seconds in by_layer.most_common()
        },
    }


def _table(result: dict[str, Any]) -> str:
    total = sum(result["layers_ms"].values())
    lines = ["| layer | ms CPU / request (under yappi) | share |", "|---|---|---|"]
    for layer, ms in result["layers_ms"].items():
        lines.append(f"| {layer} | {ms:.3f} | {ms / total:.0%} |")
    lines.append(f"| **total under yappi** | **{total:.3f}** | |")
    runs = ", ".join(f"{ms:.3f}" for ms in result["cpu_ms_per_request"])
    lines.append(
        f"\nwithout the profiler: {runs} ms CPU per request "
        f"(driver's {result['driver_ms_per_request']:.3f} ms taken off)"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3, help="plain passes, each -n requests")
    parser.add_argument("--path", default="/v1/chat/completions")
    parser.add_argument("--trace-sample-ratio", type=float, help="telemetry.trace_sample_ratio")
    parser.add_argument("--no-profile", action="store_true", help="CPU per request only")
    parser.add_argument("--top", type=int, default=60, help="functions listed by own time")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="profile-request-") as tmp:
        work = Path(tmp)
        fake, fake_port = start_fake(work)
        try:
            config, _port, key = prepare_gateway(work, fake_port)
            try:
                import uvloop

                result = uvloop.run(_run(args, config, key))
            except ImportError:
                result = asyncio.run(_run(args, config, key))
        finally:
            stop(fake)
    if "layers_ms" in result:
        print(_table(result))
    else:
        print("ms CPU per request:", result["cpu_ms_per_request"])
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
