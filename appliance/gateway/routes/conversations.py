"""Conversations of the signed-in user (browser chat): list, new, open, save, rename,
delete. Stored encrypted under the user's audit subject key (appliance.conversations)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import anyio.to_thread
from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from appliance.audit.keyring import SubjectKeyRing
from appliance.audit.sink import LogSink
from appliance.conversations import Conversation, ConversationStore
from appliance.errors import AuditUnavailable
from appliance.gateway.deps import PrincipalDep, ServicesDep
from appliance.gateway.services import GatewayServices

__all__ = ["router"]

router = APIRouter(prefix="/ui/api/conversations", tags=["ui"], include_in_schema=False)


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant", "system"]
    content: str = Field(max_length=200_000)
    reasoning: str | None = Field(default=None, max_length=200_000)
    model: str | None = Field(default=None, max_length=200)
    # An answer's receipt (the X-Audit-Receipt value) and its request id, kept so that a
    # reloaded conversation still offers the receipt and its proof.
    request_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{8,64}$")
    receipt: str | None = Field(default=None, max_length=8_000, pattern=r"^[A-Za-z0-9_-]+$")


class NewConversation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(default="New chat", min_length=1, max_length=200)


class SaveConversation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, min_length=1, max_length=200)
    messages: list[Message] | None = Field(default=None, max_length=500)


async def get_conversations(services: ServicesDep) -> ConversationStore:
    return ConversationStore(services.database, _keyring(services), services.clock)


def _keyring(services: GatewayServices) -> SubjectKeyRing:
    """A keyring over the audit log's subject keys (its own cache: the audit writer's
    thread stages keys in the log's ring)."""
    if not isinstance(services.audit, LogSink):
        raise AuditUnavailable("conversations need the sealed audit log's keys")
    return SubjectKeyRing(services.database, services.audit.log.keyring.provider)


def _view(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": conversation.conversation_id,
        "title": conversation.title,
        "messages": conversation.messages,
        "updated_at": conversation.updated_at.isoformat(),
    }


StoreDep = Depends(get_conversations)


@router.get("")
async def list_conversations(
    principal: PrincipalDep, store: ConversationStore = StoreDep
) -> dict[str, Any]:
    found = await anyio.to_thread.run_sync(lambda: store.list(principal.subject))
    return {
        "data": [
            {
                "id": item.conversation_id,
                "title": item.title,
                "erased": item.title is None,
                "updated_at": _iso(item.updated_at),
            }
            for item in found
        ]
    }


def _iso(value: datetime) -> str:
    return value.isoformat()


@router.post("", status_code=201)
async def new_conversation(
    body: NewConversation, principal: PrincipalDep, store: ConversationStore = StoreDep
) -> dict[str, Any]:
    created = await anyio.to_thread.run_sync(lambda: store.create(principal.subject, body.title))
    return _view(created)


@router.get("/{conversation_id}")
async def open_conversation(
    conversation_id: str, principal: PrincipalDep, store: ConversationStore = StoreDep
) -> dict[str, Any]:
    found = await anyio.to_thread.run_sync(lambda: store.get(principal.subject, conversation_id))
    return _view(found)


@router.put("/{conversation_id}")
async def save_conversation(
    conversation_id: str,
    body: SaveConversation,
    principal: PrincipalDep,
    store: ConversationStore = StoreDep,
) -> dict[str, Any]:
    messages = (
        None if body.messages is None else [m.model_dump(exclude_none=True) for m in body.messages]
    )
    saved = await anyio.to_thread.run_sync(
        lambda: store.save(principal.subject, conversation_id, title=body.title, messages=messages)
    )
    return _view(saved)


@router.delete("/{conversation_id}")
async def delete_conversation(
    conversation_id: str, principal: PrincipalDep, store: ConversationStore = StoreDep
) -> dict[str, Any]:
    await anyio.to_thread.run_sync(lambda: store.delete(principal.subject, conversation_id))
    return {"id": conversation_id, "deleted": True}
