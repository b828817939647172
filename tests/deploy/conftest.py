"""Starts the image test's build when collection ends (tests/deploy/image_build.py)."""

from __future__ import annotations

import os

import pytest

from tests.deploy.image_build import IMAGE_BUILD, build_wanted, start_image_build, tools_missing


def pytest_collection_finish(session: pytest.Session) -> None:
    selected = any(item.get_closest_marker("images") for item in session.items)
    if selected and build_wanted() and not tools_missing() and os.geteuid() == 0:
        session.config.stash[IMAGE_BUILD] = start_image_build()


def pytest_sessionfinish(session: pytest.Session) -> None:
    build = session.config.stash.get(IMAGE_BUILD, None)
    if build is not None:
        build.close()
