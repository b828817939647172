"""Run a gateway in its own process for multi-replica tests:
``python -m tests.support.gateway_process SETTINGS_JSON PORT``.

The audit sink is in memory (each replica would otherwise need its own log); API keys
come from the shared database in the settings.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import uvicorn

from appliance.audit.sink import MemoryAuditSink
from appliance.config import Settings
from appliance.gateway import create_app
from appliance.keys.deployment import DeploymentSecrets
from tests.support.fake_vllm import SECRET

PEPPER = "test-pepper"


def main() -> None:
    settings = Settings(**json.loads(Path(sys.argv[1]).read_text()))
    app = create_app(
        settings,
        secrets=DeploymentSecrets(engine_api_key=SECRET, api_key_pepper=PEPPER),
        audit_sink=MemoryAuditSink(),
    )
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")


if __name__ == "__main__":
    main()
