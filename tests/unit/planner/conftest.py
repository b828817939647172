"""Planner fixtures: the profiles shipped in models/."""

from __future__ import annotations

import pytest

from appliance.planner import ModelProfile, load_profiles


@pytest.fixture(scope="session")
def profiles() -> dict[str, ModelProfile]:
    return load_profiles()


@pytest.fixture(scope="session")
def deepseek_v3(profiles: dict[str, ModelProfile]) -> ModelProfile:
    return profiles["deepseek-v3"]
