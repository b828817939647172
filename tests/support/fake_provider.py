"""A recording fake of an external OpenAI-compatible provider, served over HTTPS on
loopback (issue #17 tests).

It keeps every request exactly as received (headers and body bytes), so a test can
count byte for byte what left the appliance. Models:

- ``gpt-echo``: answers with the last user message's text, so placeholders sent to the
  provider come back and must be re-identified; streamed in 3-character chunks, so a
  placeholder is always split across chunks;
- ``gpt-429``: the provider's own rate limit (``Retry-After: 7``);
- ``gpt-500``: a provider failure.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from appliance.pki.ca import init_ca
from tests.support.servers import free_port

__all__ = ["FakeProvider", "ProviderState", "provider_tls", "serve_fake_provider"]

KEY = "sk-test-provider-key-5d1e"
USAGE = {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500}


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        parsed = json.loads(self.body)
        assert isinstance(parsed, dict)
        return parsed


@dataclass
class ProviderState:
    received: list[Received] = field(default_factory=list)

    def all_bytes(self) -> bytes:
        return b"".join(r.body + json.dumps(r.headers).encode() for r in self.received)


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return " ".join(p.get("text", "") for p in content if p.get("type") == "text")
    return ""


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
    body = {
        "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }  # fmt: skip
    return b"data: " + json.dumps(body, ensure_ascii=False).encode() + b"\n\n"


def create_fake_provider(state: ProviderState) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        raw = await request.body()
        state.received.append(Received(dict(request.headers), raw))
        if request.headers.get("authorization") != f"Bearer {KEY}":
            return JSONResponse({"error": {"message": "bad key"}}, status_code=401)
        body = json.loads(raw)
        model = body.get("model")
        if model == "gpt-429":
            return JSONResponse(
                {"error": {"message": "slow down"}}, status_code=429, headers={"Retry-After": "7"}
            )
        if model != "gpt-echo":
            return JSONResponse({"error": {"message": "boom"}}, status_code=500)
        text = _last_user_text(body)
        if not body.get("stream"):
            return JSONResponse(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "created": 1,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "message": {"role": "assistant", "content": text},
                        }
                    ],
                    "usage": USAGE,
                }
            )
        usage = (body.get("stream_options") or {}).get("include_usage")

        async def events() -> AsyncIterator[bytes]:
            yield _chunk(model, {"role": "assistant", "content": ""})
            for start in range(0, len(text), 3):
                yield _chunk(model, {"content": text[start : start + 3]})
            yield _chunk(model, {}, "stop")
            if usage:
                tail = {"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                        "created": 1, "model": model, "choices": [], "usage": USAGE}  # fmt: skip
                yield b"data: " + json.dumps(tail).encode() + b"\n\n"
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def provider_tls(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path, Path]:
    """(CA file, certificate, key) for a provider at ``host`` and localhost."""
    issued = init_ca(
        directory, gateway_hosts=["127.0.0.1"], engines={"provider": [host, "localhost"]},
        days=2, now=dt.datetime.now(dt.UTC),
    )  # fmt: skip
    files = issued["provider"]
    return directory / "ca.crt", files.cert, files.key


class FakeProvider:
    """The fake served over HTTPS in a thread; ``base_url`` ends in ``/v1``."""

    def __init__(self, directory: Path, host: str = "127.0.0.1") -> None:
        """``host``: another loopback address (127.0.0.2) tells the provider's
        connections apart from the engines' in a connect audit."""
        self.state = ProviderState()
        self.host = host
        self.ca_file, cert, key = provider_tls(directory, host)
        self.port = free_port()
        config = uvicorn.Config(
            create_fake_provider(self.state), host=host, port=self.port,
            log_level="warning", ssl_certfile=str(cert), ssl_keyfile=str(key),
        )  # fmt: skip
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def base_url(self) -> str:
        return f"https://{self.host}:{self.port}/v1"

    def __enter__(self) -> FakeProvider:
        import time

        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("fake provider did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


def serve_fake_provider(directory: Path) -> FakeProvider:
    return FakeProvider(directory)
