"""Conversations are sealed under the audit subject keys: readable by their owner only,
never in clear at rest, and gone with the subject's keys."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import Engine, select

from appliance.audit.access import Actor, shred_subject
from appliance.audit.keyring import SubjectKeyRing
from appliance.conversations import ConversationStore
from appliance.db.tables import conversations
from appliance.errors import ModelNotFound
from appliance.keys.provider import FileKeyProvider
from tests.support.audit import StepClock, build_log

ALICE = "apikey:alice"


@pytest.fixture
def master_key() -> bytes:
    return os.urandom(32)


@pytest.fixture
def store(migrated_engine: Engine, master_key: bytes) -> ConversationStore:
    keyring = SubjectKeyRing(migrated_engine, FileKeyProvider(master_key))
    return ConversationStore(migrated_engine, keyring, StepClock())


def test_create_save_rename_list_delete(store: ConversationStore) -> None:
    created = store.create(ALICE, "Trip to Paris")
    store.save(ALICE, created.conversation_id, messages=[{"role": "user", "content": "hi"}])
    store.save(ALICE, created.conversation_id, title="Renamed")
    again = store.get(ALICE, created.conversation_id)
    assert again.title == "Renamed"
    assert again.messages == [{"role": "user", "content": "hi"}]
    assert [c.title for c in store.list(ALICE)] == ["Renamed"]
    assert store.list("apikey:bob") == []
    with pytest.raises(ModelNotFound):
        store.get("apikey:bob", created.conversation_id)  # not Bob's
    store.delete(ALICE, created.conversation_id)
    assert store.list(ALICE) == []


def test_nothing_in_clear_at_rest(store: ConversationStore, migrated_engine: Engine) -> None:
    created = store.create(ALICE, "secret project")
    store.save(ALICE, created.conversation_id, messages=[{"role": "user", "content": "Paris"}])
    with migrated_engine.connect() as connection:
        blob = connection.execute(select(conversations.c.envelope)).scalar_one()
    assert b"Paris" not in blob and b"secret project" not in blob


def test_shredding_the_subject_erases_their_chats(
    store: ConversationStore, migrated_engine: Engine, master_key: bytes
) -> None:
    created = store.create(ALICE, "to be erased")
    log = build_log(migrated_engine, master_key=master_key)
    destroyed = shred_subject(log, ALICE, actor=Actor("cli:dpo", "dpo"), reason="GDPR art. 17")
    assert destroyed == 1
    [summary] = store.list(ALICE)
    assert summary.title is None  # listed as erased
    with pytest.raises(ModelNotFound):
        store.get(ALICE, created.conversation_id)
    store.delete(ALICE, created.conversation_id)  # the owner can still remove it
    # A new conversation gets a fresh key.
    assert store.create(ALICE, "after").title == "after"
