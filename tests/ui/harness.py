"""A live gateway for browser tests: fake vLLM, a real sealed audit log (SQLite), and
API keys for an employee, an auditor and an admin."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.config import Settings
from appliance.db import create_db_engine, upgrade_database
from appliance.gateway import create_app
from appliance.gateway.services import utc_now
from appliance.identity.apikeys import ApiKeyService
from appliance.keys.deployment import DeploymentSecrets
from tests.support.fake_vllm import SECRET
from tests.support.servers import ServerThread, free_port

PEPPER = "test-pepper"
UI_MODELS = ["fake-model", "fake-xss", "fake-reasoning", "fake-slow"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 860}

# The ``new_context`` fixture (conftest.py): ``new_context(**options)`` -> a browser context.
NewContext = Callable[..., Any]


@dataclass
class UiGateway:
    url: str
    settings: Settings
    keys: ApiKeyService
    user_key: str
    auditor_key: str
    admin_key: str

    def key(self, roles: list[str], owner: str = "tester") -> str:
        return self.keys.create(
            name="ui", owner=owner, roles=roles, models=None, now=utc_now()
        ).secret


def ui_settings(tmp_path: Path, upstream_url: str) -> Settings:
    dead = f"http://127.0.0.1:{free_port()}"
    upstreams = [{"model": name, "url": upstream_url} for name in UI_MODELS]
    upstreams.append({"model": "fake-absent", "url": dead})
    # Two replicas of one model, one of them dead: the admin page shows both rows.
    upstreams += [{"model": "fake-pooled", "url": url} for url in (upstream_url, dead)]
    return Settings(
        data_dir=tmp_path / "data",
        database={"url": f"sqlite:///{tmp_path / 'gateway.db'}"},
        engine={"enabled": False},
        gateway={"upstreams": upstreams, "upstream_timeout_s": 5.0},
        audit={"checkpoint_interval_s": 0.5},
    )


@contextmanager
def ui_gateway(tmp_path: Path, upstream_url: str) -> Iterator[UiGateway]:
    settings = ui_settings(tmp_path, upstream_url)
    database = create_db_engine(settings.database_url)
    upgrade_database(database)
    keys = ApiKeyService(database, PEPPER)

    def make(roles: list[str], owner: str) -> str:
        return keys.create(name=owner, owner=owner, roles=roles, models=None, now=utc_now()).secret

    user = make(["appliance-user"], "erin.employee")
    auditor = make(["appliance-auditor"], "carla.compliance")
    admin = make(["appliance-admin", "appliance-user"], "adam.admin")
    app = create_app(
        settings, secrets=DeploymentSecrets(engine_api_key=SECRET, api_key_pepper=PEPPER)
    )
    try:
        with ServerThread(app) as server:
            yield UiGateway(server.url, settings, keys, user, auditor, admin)
    finally:
        database.dispose()


def sign_in(page: Any, base: str, api_key: str, next_path: str = "/ui/chat") -> None:
    page.goto(f"{base}/ui/login?next={next_path}")
    page.fill("#api-key", api_key)
    page.click("#sign-in")
    page.wait_for_url(f"{base}{next_path}")


def screenshot(page: Any, name: str, tmp_path: Path) -> Path:
    """Saved as a test artifact; also into docs/screenshots when
    APPLIANCE_UI_SCREENSHOTS=1 (how the README's pictures are made)."""
    target = tmp_path / f"{name}.png"
    page.screenshot(path=str(target), full_page=True)
    if os.environ.get("APPLIANCE_UI_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    return target
