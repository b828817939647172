"""Conversations per user, encrypted with the owner's audit subject key.

Title and messages are one envelope (AES-256-GCM data key wrapped by the subject key,
the same format as audit content), bound to the conversation id and owner as
associated data. Shredding the subject (``appliance audit shred``) destroys the key,
so the conversations become unreadable with the audit content: they are listed as
erased and can only be deleted.
"""

from __future__ import annotations

import builtins
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, and_, delete, insert, select, update

from appliance.audit.envelope import open_envelope, seal
from appliance.audit.keyring import SubjectKeyRing
from appliance.db.tables import conversations
from appliance.errors import ModelNotFound

__all__ = ["Conversation", "ConversationStore", "ConversationSummary"]

MAX_MESSAGES = 500


@dataclass(frozen=True)
class ConversationSummary:
    conversation_id: str
    title: str | None  # None when the owner's key was shredded
    updated_at: datetime


@dataclass(frozen=True)
class Conversation:
    conversation_id: str
    title: str
    messages: list[dict[str, Any]]
    updated_at: datetime


def _bound(conversation_id: str, subject: str) -> bytes:
    return f"appliance-conversation/v1\n{conversation_id}\n{subject}".encode()


class ConversationStore:
    """Reads and writes one subject's conversations; time is passed in as a clock."""

    def __init__(self, engine: Engine, keyring: SubjectKeyRing, clock: Callable[[], datetime]):
        self._engine = engine
        self._keyring = keyring
        self._clock = clock

    def _seal(self, conversation_id: str, subject: str, body: dict[str, Any]) -> dict[str, Any]:
        now = self._clock()
        try:
            with self._engine.begin() as connection:
                key_id, key = self._keyring.keys_for(connection, [subject], now)[subject]
        except BaseException:
            self._keyring.discard()
            raise
        self._keyring.commit()
        plaintext = json.dumps(body, ensure_ascii=False, sort_keys=True).encode()
        envelope = seal(
            plaintext,
            associated_data=_bound(conversation_id, subject),
            subject_key=key,
            key_id=key_id,
        )
        return {"key_id": key_id, "envelope": envelope, "updated_at": now}

    def _open(self, row: Any) -> dict[str, Any] | None:
        key = self._keyring.key(row.key_id)
        if key is None:
            return None
        plaintext = open_envelope(
            row.envelope,
            associated_data=_bound(row.conversation_id, row.subject),
            subject_key=key,
        )
        body: dict[str, Any] = json.loads(plaintext)
        return body

    def _row(self, subject: str, conversation_id: str) -> Any:
        with self._engine.connect() as connection:
            row = connection.execute(
                select(conversations).where(
                    and_(
                        conversations.c.conversation_id == conversation_id,
                        conversations.c.subject == subject,
                    )
                )
            ).first()
        if row is None:
            raise ModelNotFound("no such conversation", code="conversation_not_found")
        return row

    def create(self, subject: str, title: str) -> Conversation:
        conversation_id = secrets.token_hex(16)
        sealed = self._seal(conversation_id, subject, {"title": title, "messages": []})
        with self._engine.begin() as connection:
            connection.execute(
                insert(conversations).values(
                    conversation_id=conversation_id,
                    subject=subject,
                    created_at=sealed["updated_at"],
                    **sealed,
                )
            )
        return Conversation(conversation_id, title, [], sealed["updated_at"])

    def list(self, subject: str) -> list[ConversationSummary]:
        with self._engine.connect() as connection:
            rows = connection.execute(
                select(conversations)
                .where(conversations.c.subject == subject)
                .order_by(conversations.c.updated_at.desc())
            ).all()
        out = []
        for row in rows:
            body = self._open(row)
            title = None if body is None else str(body.get("title", ""))
            out.append(ConversationSummary(row.conversation_id, title, row.updated_at))
        return out

    def get(self, subject: str, conversation_id: str) -> Conversation:
        row = self._row(subject, conversation_id)
        body = self._open(row)
        if body is None:
            raise ModelNotFound("this conversation was erased", code="conversation_erased")
        return Conversation(
            conversation_id, str(body["title"]), list(body["messages"]), row.updated_at
        )

    def save(
        self,
        subject: str,
        conversation_id: str,
        *,
        title: str | None = None,
        messages: builtins.list[dict[str, Any]] | None = None,
    ) -> Conversation:
        current = self.get(subject, conversation_id)
        body: dict[str, Any] = {
            "title": current.title if title is None else title,
            "messages": current.messages if messages is None else messages[-MAX_MESSAGES:],
        }
        sealed = self._seal(conversation_id, subject, body)
        with self._engine.begin() as connection:
            connection.execute(
                update(conversations)
                .where(conversations.c.conversation_id == conversation_id)
                .values(**sealed)
            )
        return Conversation(conversation_id, body["title"], body["messages"], sealed["updated_at"])

    def delete(self, subject: str, conversation_id: str) -> None:
        self._row(subject, conversation_id)
        with self._engine.begin() as connection:
            connection.execute(
                delete(conversations).where(conversations.c.conversation_id == conversation_id)
            )
