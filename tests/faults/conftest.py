"""Fault tests reuse the integration harness (gateway + fake vLLM)."""

from tests.integration.conftest import client, fake_vllm, harness  # noqa: F401
