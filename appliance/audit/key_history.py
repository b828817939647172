"""The log's key history: which key signed the checkpoints of which tree sizes.

A log keeps its checkpoint key for years, but not for ever: `appliance audit keys
migrate --to pkcs11` moves it into an HSM, where it may become a new key (a token
without Ed25519 signs with ECDSA P-256). Checkpoints signed before such a change must
still verify, and a stolen old key must not sign new ones. So the change is written
into the log itself, and the handover is signed by both keys:

1. an ``audit.keys`` record (``params``: ``action``, ``previous_key``, ``key``, both
   C2SP verifier keys) is appended while the old key still signs;
2. the first checkpoint that covers that record (the handover) carries signatures by
   the old key and the new one (two lines of one signed note, C2SP signed-note);
3. from the record's index + 1 on, checkpoints are signed by the new key only.

The history is read back from those records: epoch 0 is the first record's previous
key (or, with no record, the key the caller trusts); each record starts an epoch at
its index + 1. It is trusted only through checkpoints: :func:`check_checkpoints`
verifies each checkpoint under the key of its size and each handover under both keys,
and `audit verify` then checks that every record, these included, hashes into the
signed roots. A caller who trusts any one key of the chain thereby trusts all: the
handover both keys signed commits to the record naming them. Pure apart from
:func:`read_key_history`, which reads the ``audit.keys`` records.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select

from appliance.audit.checkpoint import (
    Checkpoint,
    NoteVerifier,
    parse_checkpoint,
    parse_note,
    verify_checkpoint,
)
from appliance.audit.records import AuditEvent
from appliance.db.tables import audit_log
from appliance.errors import VerificationError

__all__ = [
    "KeyChange",
    "KeyEpoch",
    "KeyHistory",
    "change_details",
    "history_from_changes",
    "read_key_history",
]


@dataclass(frozen=True)
class KeyChange:
    """One ``audit.keys`` record: at leaf ``index`` the key changed."""

    index: int
    recorded_at: datetime | None
    previous_key: str
    key: str


@dataclass(frozen=True)
class KeyEpoch:
    """A key and the first tree size it signs (``from_size``); ``index`` is the
    ``audit.keys`` record that started it (None for the log's first key)."""

    verifier: NoteVerifier
    from_size: int
    index: int | None = None
    recorded_at: datetime | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "verifier_key": self.verifier.verifier_key(),
            "algorithm": self.verifier.algorithm,
            "from_tree_size": self.from_size,
            "record_index": self.index,
            "since": self.recorded_at.isoformat() if self.recorded_at else None,
        }


def change_details(previous: NoteVerifier, new: NoteVerifier, **more: Any) -> dict[str, Any]:
    """The ``params`` of an ``audit.keys`` record for a key change."""
    return {"action": "migrate", "previous_key": previous.verifier_key(),
            "key": new.verifier_key(), **more}  # fmt: skip


@dataclass(frozen=True)
class KeyHistory:
    """Epochs in order; ``from_size`` strictly increasing, the first 0."""

    epochs: tuple[KeyEpoch, ...]

    @classmethod
    def single(cls, verifier: NoteVerifier) -> KeyHistory:
        return cls((KeyEpoch(verifier, 0),))

    @property
    def current(self) -> NoteVerifier:
        return self.epochs[-1].verifier

    def epoch_for(self, size: int) -> int:
        """The number of the epoch whose key signs checkpoints of ``size``."""
        starts = [epoch.from_size for epoch in self.epochs]
        return max(bisect.bisect_right(starts, size) - 1, 0)

    def verifier_for(self, size: int) -> NoteVerifier:
        return self.epochs[self.epoch_for(size)].verifier

    def verify(self, note: str, *, origin: str) -> Checkpoint:
        """A checkpoint verified under the key of its (claimed, then signed) size."""
        try:
            claimed = parse_checkpoint(parse_note(note).text).size
        except VerificationError:
            claimed = 0  # malformed: the verification below names why
        return verify_checkpoint(note, self.verifier_for(claimed), origin=origin)

    def check_handovers(self, notes: Sequence[tuple[int, str]], *, origin: str) -> None:
        """Step 2 of the module doc: the first checkpoint at or after each epoch's start
        is signed by the previous key too. ``notes``: (tree size, note) in order."""
        for number in range(1, len(self.epochs)):
            start = self.epochs[number].from_size
            handover = next((note for size, note in notes if size >= start), None)
            if handover is None:
                continue  # the new key has signed nothing yet
            previous = self.epochs[number - 1].verifier
            try:
                verify_checkpoint(handover, previous, origin=origin)
            except VerificationError as exc:
                raise VerificationError(
                    f"the key change at record {self.epochs[number].index} has no handover "
                    f"checkpoint signed by the previous key ({exc.message})"
                ) from exc


def history_from_changes(changes: Sequence[KeyChange], trusted: NoteVerifier) -> KeyHistory:
    """Build the history and check that it is one chain holding ``trusted``;
    VerificationError naming the break."""
    if not changes:
        return KeyHistory.single(trusted)
    try:
        first = NoteVerifier.from_verifier_key(changes[0].previous_key)
    except VerificationError as exc:
        raise VerificationError(
            f"key change record {changes[0].index}: previous key: {exc.message}"
        ) from exc
    epochs = [KeyEpoch(first, 0)]
    for change in changes:
        if change.key == change.previous_key:
            continue  # the key moved (imported into a token) but did not change
        if change.previous_key != epochs[-1].verifier.verifier_key():
            raise VerificationError(
                f"key change record {change.index} starts from a key the log did not hold"
            )
        try:
            verifier = NoteVerifier.from_verifier_key(change.key)
        except VerificationError as exc:
            raise VerificationError(f"key change record {change.index}: {exc.message}") from exc
        if verifier.name != first.name:
            raise VerificationError(f"key change record {change.index} renames the log's key")
        epochs.append(KeyEpoch(verifier, change.index + 1, change.index, change.recorded_at))
    history = KeyHistory(tuple(epochs))
    held = {epoch.verifier.verifier_key() for epoch in history.epochs}
    if trusted.verifier_key() not in held:
        raise VerificationError(
            f"key {trusted.name}+{trusted.key_id.hex()} is not in the log's key history"
        )
    return history


def read_key_history(engine: Engine, trusted: NoteVerifier) -> KeyHistory:
    """The history from the log's ``audit.keys`` records (see the module doc)."""
    query = (
        select(audit_log.c.idx, audit_log.c.recorded_at, audit_log.c.params)
        .where(audit_log.c.event == AuditEvent.AUDIT_KEYS.value)
        .order_by(audit_log.c.idx)
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    changes = []
    for index, recorded_at, params in rows:
        if not isinstance(params, dict) or params.get("action") != "migrate":
            continue
        previous, key = params.get("previous_key"), params.get("key")
        if not isinstance(previous, str) or not isinstance(key, str):
            raise VerificationError(f"key change record {index} names no keys")
        changes.append(KeyChange(int(index), recorded_at, previous, key))
    return history_from_changes(changes, trusted)
