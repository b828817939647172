"""The OpenAPI fuzzing reuses the integration harness's fake vLLM."""

from tests.integration.conftest import fake_vllm  # noqa: F401
