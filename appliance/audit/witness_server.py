"""``appliance witness serve``: the witness (:mod:`appliance.audit.witness`) over HTTP,
configured by a small YAML file of its own (it runs away from the appliance)."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import unquote

import anyio.to_thread
import yaml
from pydantic import BaseModel, ConfigDict, Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from appliance.audit.checkpoint import NoteVerifier
from appliance.audit.cosignature import Cosigner
from appliance.audit.witness import MAX_BODY_BYTES, Witness, WitnessState
from appliance.keys.files import load_or_create_secret

__all__ = ["WitnessConfig", "WitnessedLog", "load_witness", "witness_app"]


class WitnessedLog(BaseModel):
    model_config = ConfigDict(extra="forbid")

    verifier_key: str = Field(
        description="The log's checkpoint key, `<origin>+<id>+<key>` (`appliance audit "
        "public-key` on the appliance)"
    )


class WitnessConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="The witness's name, e.g. witness.example.internal/w1")
    key_file: Path = Field(description="Its cosigning key (created on first start, 0600)")
    state_file: Path = Field(description="The latest cosigned checkpoint per log")
    host: str = "127.0.0.1"
    port: int = Field(default=8790, ge=1, le=65535)
    logs: list[WitnessedLog] = Field(min_length=1, description="The logs it witnesses")

    @classmethod
    def from_file(cls, path: Path) -> WitnessConfig:
        return cls.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")) or {})


def load_witness(config: WitnessConfig) -> Witness:
    text = load_or_create_secret(
        config.key_file, factory=lambda: Cosigner.generate(config.name).signer_key()
    )
    cosigner = Cosigner.from_signer_key(text)
    if cosigner.name != config.name:
        raise ValueError(
            f"{config.key_file} holds the key of witness {cosigner.name!r}, not {config.name!r}"
        )
    logs = {}
    for log in config.logs:
        verifier = NoteVerifier.from_verifier_key(log.verifier_key)
        logs[verifier.name] = verifier
    return Witness(cosigner, logs, WitnessState(config.state_file), clock_s=time.time)


def witness_app(witness: Witness) -> Starlette:
    async def add_checkpoint(request: Request) -> Response:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                return PlainTextResponse("request too large\n", status_code=413)
        # The state file is fsynced before the answer: off the event loop.
        answer = await anyio.to_thread.run_sync(witness.add_checkpoint, body)
        return Response(answer.body, status_code=answer.status, media_type=answer.content_type)

    async def latest(request: Request) -> Response:
        origin = unquote(request.path_params["origin"])
        note = witness.latest(origin)
        if note is None:
            return PlainTextResponse(f"no checkpoint cosigned for {origin!r}\n", status_code=404)
        return PlainTextResponse(note)

    async def key(_request: Request) -> Response:
        return PlainTextResponse(witness.cosigner.verifier().verifier_key() + "\n")

    return Starlette(
        routes=[
            Route("/add-checkpoint", add_checkpoint, methods=["POST"]),
            Route("/checkpoints/{origin:path}", latest, methods=["GET"]),
            Route("/key", key, methods=["GET"]),
        ]
    )
