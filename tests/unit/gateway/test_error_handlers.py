"""appliance/gateway/errors.py: every error response the gateway sends is counted in
``appliance_errors_total`` by type and code, and every code is in docs/gateway.md's
error table.

Both lists are derived from the error tree (every ``ApplianceError`` subclass in the
package, and every ``code=`` the package raises one with), so a new error class or code
fails here until it is counted and documented."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.exceptions import HTTPException as StarletteHTTPException

import appliance
from appliance.config import Settings
from appliance.errors import ApplianceError, RateLimited
from appliance.gateway.errors import install_error_handlers
from appliance.gateway.middleware import (
    MAX_HEADER_BYTES,
    HeaderLimitMiddleware,
    RequestIdMiddleware,
    UnexpectedErrorMiddleware,
)
from appliance.planner.capacity import PlanRefused
from appliance.telemetry import GatewayMetrics, Telemetry, build_tracer_provider

PACKAGE = Path(appliance.__file__).parent
DOCS = PACKAGE.parent / "docs" / "gateway.md"

# Raised by `appliance plan` only: the gateway never plans a model.
NOT_SENT_BY_THE_GATEWAY = {PlanRefused}


def _import_package() -> None:
    """Import every module, so that subclasses defined anywhere are found."""
    for module in pkgutil.walk_packages(appliance.__path__, "appliance."):
        if not module.name.endswith(".__main__"):  # importing it runs the CLI
            importlib.import_module(module.name)


def _subclasses(cls: type[ApplianceError]) -> Iterator[type[ApplianceError]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def error_classes() -> list[type[ApplianceError]]:
    _import_package()
    found: set[type[ApplianceError]] = {ApplianceError, *_subclasses(ApplianceError)}
    found -= NOT_SENT_BY_THE_GATEWAY
    return sorted(found, key=lambda cls: f"{cls.__module__}.{cls.__qualname__}")


def raised_codes(classes: list[type[ApplianceError]]) -> set[tuple[type[ApplianceError], str]]:
    """Every ``SomeError(..., code="...")`` in the package. The renderer's own
    translations of framework errors are left to the explicit cases below: it sets
    their status after construction."""
    by_name = {cls.__name__: cls for cls in classes}
    found = set()
    for path in PACKAGE.rglob("*.py"):
        if path == PACKAGE / "gateway" / "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name not in by_name:
                continue
            for keyword in node.keywords:
                if keyword.arg == "code":
                    found |= {(by_name[name], code) for code in _strings(keyword.value)}
    return found


def _strings(value: ast.expr) -> set[str]:
    """The codes an expression can give: a literal, or either branch of ``a if c else b``."""
    if isinstance(value, ast.Constant) and isinstance(value.value, str):
        return {value.value}
    if isinstance(value, ast.IfExp):
        return _strings(value.body) | _strings(value.orelse)
    return set()


CLASSES = error_classes()
CASES = sorted(
    {(cls, cls.code) for cls in CLASSES} | raised_codes(CLASSES),
    key=lambda case: (case[0].__qualname__, case[1]),
)


def documented() -> set[tuple[str, str]]:
    """(status, code) pairs of the "## Errors" table; a status may read ``4xx``."""
    section = DOCS.read_text().split("\n## Errors\n", 1)[1].split("\n## ", 1)[0]
    pairs = set()
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and re.fullmatch(r"\d{3}|\dxx", cells[0]):
            pairs |= {(cells[0], code) for code in re.findall(r"`([a-z_]+)`", cells[1])}
    return pairs


def is_documented(status: int, code: str) -> bool:
    pairs = documented()
    return (str(status), code) in pairs or (f"{status // 100}xx", code) in pairs


def make(cls: type[ApplianceError], code: str) -> ApplianceError:
    # The base initialiser, whatever the subclass's own signature asks for.
    error = cls.__new__(cls)
    ApplianceError.__init__(error, f"a {cls.__name__}", code=code)
    if isinstance(error, RateLimited):
        error.retry_after_s = 7
    return error


def gateway_like(raising: ApplianceError | None = None) -> tuple[FastAPI, GatewayMetrics]:
    """The error handlers and middleware exactly as ``create_app`` installs them, and
    services holding the metrics (the routes are not under /v1/, so no audit record)."""
    metrics = GatewayMetrics()
    settings = Settings().telemetry
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(UnexpectedErrorMiddleware)
    app.add_middleware(RequestIdMiddleware)
    app.add_middleware(HeaderLimitMiddleware)
    app.state.services = SimpleNamespace(
        telemetry=Telemetry(settings, metrics, build_tracer_provider(settings))
    )

    @app.get("/raise")
    async def raise_it() -> None:
        assert raising is not None
        raise raising

    @app.post("/post-only")
    async def post_only() -> None:
        return None

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("an unmapped bug")

    @app.get("/framework")
    async def framework() -> None:
        raise StarletteHTTPException(409, "conflict")

    @app.get("/typed")
    async def typed(n: int) -> int:
        return n

    return app, metrics


def counted(metrics: GatewayMetrics, error_type: str, code: str) -> float:
    value = metrics.registry.get_sample_value(
        "appliance_errors_total", {"type": error_type, "code": code}
    )
    return value or 0.0


def test_the_tree_is_found_beyond_appliance_errors() -> None:
    names = {cls.__name__ for cls in CLASSES}
    assert {"IdentityUnavailable", "LogVerificationError", "RequestHeadersTooLarge"} <= names
    assert ("PermissionDenied", "csrf_failed") in {(c.__name__, code) for c, code in CASES}


@pytest.mark.parametrize(
    ("cls", "code"), CASES, ids=[f"{cls.__name__}-{code}" for cls, code in CASES]
)
def test_every_error_of_the_tree_is_counted_and_documented(
    cls: type[ApplianceError], code: str
) -> None:
    error = make(cls, code)
    app, metrics = gateway_like(error)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/raise")
    assert response.status_code == cls.status_code
    assert response.json()["error"]["code"] == code
    assert counted(metrics, cls.error_type, code) == 1
    assert is_documented(cls.status_code, code), f"{cls.status_code} {code} not in {DOCS}"


@pytest.mark.parametrize(
    ("method", "path", "headers", "status", "error_type", "code"),
    [
        ("GET", "/post-only", {}, 405, "invalid_request_error", "method_not_allowed"),
        ("GET", "/no-such-route", {}, 404, "invalid_request_error", "not_found"),
        ("GET", "/boom", {}, 500, "server_error", "internal_error"),
        ("GET", "/framework", {}, 409, "invalid_request_error", "http_error"),
        ("GET", "/typed?n=x", {}, 400, "invalid_request_error", "invalid_request"),
        (
            "GET", "/typed?n=1", {"x-big": "a" * MAX_HEADER_BYTES},
            431, "invalid_request_error", "headers_too_large",
        ),
    ],
)  # fmt: skip
def test_framework_and_middleware_errors_are_counted_and_documented(
    method: str, path: str, headers: dict[str, str], status: int, error_type: str, code: str
) -> None:
    app, metrics = gateway_like()
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.request(method, path, headers=headers)
    assert response.status_code == status
    error = response.json()["error"]
    assert (error["type"], error["code"]) == (error_type, code)
    assert counted(metrics, error_type, code) == 1
    assert is_documented(status, code), f"{status} {code} not in {DOCS}"


def test_an_app_without_services_renders_errors_uncounted() -> None:
    app, _metrics = gateway_like()
    del app.state.services
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/boom").status_code == 500
