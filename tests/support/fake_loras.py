"""vLLM's runtime LoRA routes for the fake engine: ``POST /v1/load_lora_adapter``,
``/v1/unload_lora_adapter`` and the adapters in ``GET /v1/models``, with vLLM 0.32's
answers (400 "has already been loaded", 404 "cannot be found").

They exist only while ``FakeState.loras`` is a dict (an engine started with
``VLLM_ALLOW_RUNTIME_LORA_UPDATING``); with None they answer FastAPI's bare 404, as a
vLLM without it does. Every call is recorded in ``FakeState.lora_calls``."""

from __future__ import annotations

from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["LoraState", "lora_routes"]


class LoraState(Protocol):
    loras: dict[str, str] | None
    lora_calls: list[tuple[str, dict[str, Any]]]
    lora_models: list[str]


def _error(message: str, kind: str, status: int) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": kind, "param": None, "code": status}}, status
    )


def lora_routes(state: LoraState, *, secret: str) -> list[Route]:
    def refused(request: Request) -> Response | None:
        if request.headers.get("authorization") != f"Bearer {secret}":
            return JSONResponse({"error": {"message": "Unauthorized"}}, status_code=401)
        if state.loras is None:
            return JSONResponse({"detail": "Not Found"}, status_code=404)
        return None

    async def load(request: Request) -> Response:
        if (answer := refused(request)) is not None:
            return answer
        assert state.loras is not None
        body = await request.json()
        state.lora_calls.append(("load", body))
        name = body["lora_name"]
        if name in state.loras:
            return _error(
                f"The lora adapter '{name}' has already been loaded. If you want to load "
                "the adapter in place, set 'load_inplace' to True.", "BadRequestError", 400,
            )  # fmt: skip
        state.loras[name] = body["lora_path"]
        return Response(f"Success: LoRA adapter '{name}' added successfully.")

    async def unload(request: Request) -> Response:
        if (answer := refused(request)) is not None:
            return answer
        assert state.loras is not None
        body = await request.json()
        state.lora_calls.append(("unload", body))
        name = body["lora_name"]
        if state.loras.pop(name, None) is None:
            return _error(f"The lora adapter '{name}' cannot be found.", "NotFoundError", 404)
        return Response(f"Success: LoRA adapter '{name}' removed successfully.")

    async def models(request: Request) -> Response:
        if (answer := refused(request)) is not None:
            return answer
        assert state.loras is not None
        cards = [{"id": m, "object": "model", "parent": None} for m in state.lora_models]
        cards += [
            {"id": name, "object": "model", "root": path, "parent": name.rpartition(":")[0]}
            for name, path in state.loras.items()
        ]
        return JSONResponse({"object": "list", "data": cards})

    return [
        Route("/v1/load_lora_adapter", load, methods=["POST"]),
        Route("/v1/unload_lora_adapter", unload, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
    ]
