"""The pure parts of running LiteLLM beside the gateway (bench/litellm_venv.py,
bench/litellm_proxy.py): which requirements the proxy extra adds, how an install that
PyPI cannot satisfy is relaxed (and says so), and the proxy's config and environment."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench"
if str(BENCH) not in sys.path:  # the bench scripts import each other the same way
    sys.path.insert(0, str(BENCH))

from litellm_proxy import litellm_command, litellm_env, proxy_config  # noqa: E402
from litellm_venv import extra_requirements, missing_requirement, relax  # noqa: E402

# Shaped like litellm 1.110.2's Requires-Dist (shortened).
REQUIRES = [
    "httpx[http2]<1.0,>=0.28.0",
    'pyyaml<7.0,>=6.0.3; extra == "cli"',
    'litellm-proxy==1.110.2; extra == "proxy"',
    'uvicorn<1.0,>=0.33.0; extra == "proxy"',
    'granian<3.0,>=2.7.4; python_full_version < "3.0" and extra == "proxy"',
    'httpx[http2]<1.0,>=0.28.0; extra == "proxy"',
    'litellm-proxy-extras==0.4.114.post1; extra == "proxy"',
]

PIP_MISSING = """\
INFO: pip is looking at multiple versions of litellm[proxy] to determine which version...
ERROR: Could not find a version that satisfies the requirement litellm-proxy==1.110.2; \
extra == "proxy" (from litellm[proxy]) (from versions: none)
ERROR: No matching distribution found for litellm-proxy==1.110.2; extra == "proxy"
"""


def test_extra_requirements_keep_only_the_extras_own_for_this_python() -> None:
    assert extra_requirements(REQUIRES, "proxy") == [
        "litellm-proxy==1.110.2",
        "uvicorn<1.0,>=0.33.0",
        "httpx[http2]<1.0,>=0.28.0",
        "litellm-proxy-extras==0.4.114.post1",
    ]
    assert extra_requirements(REQUIRES, "cli") == ["pyyaml<7.0,>=6.0.3"]


def test_missing_requirement_reads_pips_last_complaint() -> None:
    assert missing_requirement(PIP_MISSING) == "litellm-proxy"
    assert missing_requirement("ERROR: No matching distribution found for Litellm_Enterprise")\
        == "litellm-enterprise"  # fmt: skip
    assert missing_requirement("Successfully installed litellm-1.110.2") is None


def test_relax_drops_a_pin_then_the_requirement_and_says_so() -> None:
    requirements = extra_requirements(REQUIRES, "proxy")
    once, note = relax(requirements, "litellm-proxy")
    assert once == ["litellm-proxy", *requirements[1:]]
    assert "litellm-proxy==1.110.2" in note and "newest release" in note
    twice, note = relax(once, "litellm-proxy", wanted="litellm-proxy==1.110.2")
    assert twice == requirements[1:]
    assert note == "litellm-proxy==1.110.2: no release on PyPI at all; left out"
    with pytest.raises(ValueError):
        relax(twice, "litellm-proxy")


def test_proxy_config_serves_the_fake_as_an_openai_model_behind_the_master_key() -> None:
    config = proxy_config("http://127.0.0.1:8001", "fake-model", "engine-key", "sk-master")
    (entry,) = config["model_list"]
    assert entry["model_name"] == "fake-model"
    assert entry["litellm_params"] == {"model": "openai/fake-model",
                                       "api_base": "http://127.0.0.1:8001/v1",
                                       "api_key": "engine-key"}  # fmt: skip
    assert config["general_settings"] == {"master_key": "sk-master"}


def test_proxy_env_drops_the_products_settings_and_never_downloads_the_cost_map() -> None:
    env = litellm_env({"PATH": "/usr/bin", "APPLIANCE_DATABASE__URL": "x", "VIRTUAL_ENV": "v",
                       "LITELLM_LOCAL_MODEL_COST_MAP": "False", "DATABASE_URL": "pg"})  # fmt: skip
    assert env == {"PATH": "/usr/bin", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    assert litellm_command(Path("/v/bin/litellm"), Path("/w/c.yaml"), 4000) == [
        "/v/bin/litellm",
        "--config",
        "/w/c.yaml",
        "--host",
        "127.0.0.1",
        "--port",
        "4000",
    ]
