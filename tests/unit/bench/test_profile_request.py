"""The pure part of bench/profile_request.py: which layer a function's CPU time goes
to, shared code (builtins, SQLAlchemy) split over its callers by call-edge time."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench"
if str(BENCH) not in sys.path:  # the bench scripts import each other the same way
    sys.path.insert(0, str(BENCH))

from profile_request import _attribute, layer_of  # noqa: E402

SITE = "/venv/lib/python3.11/site-packages"
AUDIT = "audit: append + commit (writer, SQLAlchemy, SQLite)"
IDENTITY = "identity (API key, cached)"
MIDDLEWARE = "middleware (request id, 500s, header limit)"
LOOP = "event loop, thread hops (asyncio, anyio)"


@dataclass
class Edge:  # yappi's child stat: the callee, and the time spent in it from this caller
    index: int
    ttot: float


@dataclass
class Stat:  # the fields of yappi's YFuncStat that the attribution reads
    index: int
    module: str
    name: str
    tsub: float
    builtin: bool = False
    children: list[Edge] = field(default_factory=list)


@pytest.mark.parametrize(
    ("module", "name", "layer"),
    [
        ("/work/main/appliance/gateway/middleware.py", "f", MIDDLEWARE),
        ("/work/main/appliance/audit/writer.py", "f", AUDIT),
        ("/work/main/appliance/audit/envelope.py", "seal", "audit: record build, seal, receipt"),
        ("/work/main/appliance/identity/apikey_cache.py", "lookup", IDENTITY),
        (f"{SITE}/fastapi/routing.py", "app", "routing + dependency injection (FastAPI/Starlette)"),
        ("/work/main/bench/profile_request.py", "post", "ASGI driver (this script; taken off)"),
        ("_thread", "<method 'acquire' of '_thread.lock' objects>", LOOP),
        ("builtins", "len", "builtins (unattributed)"),
    ],
)  # fmt: skip
def test_layer_of_a_module(module: str, name: str, layer: str) -> None:
    assert layer_of(module, name) == layer


def test_shared_code_goes_to_its_callers_by_edge_time() -> None:
    execute = Stat(3, f"{SITE}/sqlalchemy/engine/base.py", "execute", tsub=4.0)
    commit = Stat(4, "sqlite3", "commit", tsub=2.0, builtin=True)
    writer = Stat(1, "/work/main/appliance/audit/log.py", "append", tsub=1.0,
                  children=[Edge(3, 3.0), Edge(4, 2.0)])  # fmt: skip
    keys = Stat(2, "/work/main/appliance/identity/apikeys.py", "find", tsub=0.5,
                children=[Edge(3, 1.0)])  # fmt: skip
    by_layer, _functions = _attribute([writer, keys, execute, commit])
    assert by_layer[AUDIT] == pytest.approx(1.0 + 4.0 * 3 / 4 + 2.0)
    assert by_layer[IDENTITY] == pytest.approx(0.5 + 4.0 * 1 / 4)
    assert sum(by_layer.values()) == pytest.approx(7.5)
