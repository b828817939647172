"""The security checks reuse the integration harness: a gateway in front of the fake
vLLM with a real SQLite audit store."""

from tests.integration.conftest import client, fake_vllm, harness  # noqa: F401
