"""appliance/audit/key_history.py (pure parts): epochs from key-change records, the key
for each tree size, and the chain that a trusted key must be part of."""

from __future__ import annotations

import pytest

from appliance.audit.checkpoint import Checkpoint, NoteSigner, sign_checkpoint
from appliance.audit.key_history import KeyChange, KeyHistory, history_from_changes
from appliance.errors import VerificationError
from tests.support.audit import ORIGIN

A, B, C = (NoteSigner.generate(ORIGIN) for _ in range(3))


def key(signer: NoteSigner) -> str:
    return signer.verifier().verifier_key()


def note(size: int, *signers: NoteSigner) -> str:
    first, *rest = signers
    also = NoteSigner(ORIGIN, rest[0].private_key) if rest else None
    return sign_checkpoint(
        Checkpoint(ORIGIN, size, bytes(32)), NoteSigner(ORIGIN, first.private_key, also=also)
    )


CHANGES = [KeyChange(4, None, key(A), key(B)), KeyChange(9, None, key(B), key(C))]


def test_each_size_has_the_key_of_its_epoch() -> None:
    history = history_from_changes(CHANGES, C.verifier())
    assert [e.from_size for e in history.epochs] == [0, 5, 10]
    assert [history.verifier_for(n).key_id for n in (0, 4, 5, 9, 10, 99)] == [
        A.key_id, A.key_id, B.key_id, B.key_id, C.key_id, C.key_id,
    ]  # fmt: skip
    assert history.current.key_id == C.key_id
    assert history.verify(note(3, A), origin=ORIGIN).size == 3
    with pytest.raises(VerificationError, match="no signature by key"):
        history.verify(note(7, A), origin=ORIGIN)  # the old key signing a later size


def test_no_record_means_one_key_and_a_same_key_move_no_epoch() -> None:
    assert history_from_changes([], A.verifier()) == KeyHistory.single(A.verifier())
    moved = history_from_changes([KeyChange(2, None, key(A), key(A))], A.verifier())
    assert len(moved.epochs) == 1


def test_the_trusted_key_must_be_in_one_unbroken_chain() -> None:
    with pytest.raises(VerificationError, match="not in the log's key history"):
        history_from_changes(CHANGES, NoteSigner.generate(ORIGIN).verifier())
    broken = [CHANGES[0], KeyChange(9, None, key(A), key(C))]
    with pytest.raises(VerificationError, match="record 9 starts from a key the log did not hold"):
        history_from_changes(broken, A.verifier())
    renamed = NoteSigner("other.example/log", B.private_key)
    with pytest.raises(VerificationError, match="renames"):
        history_from_changes([KeyChange(1, None, key(A), key(renamed))], A.verifier())


def test_each_handover_must_carry_the_previous_key() -> None:
    history = history_from_changes(CHANGES, A.verifier())
    good = [(3, note(3, A)), (5, note(5, B, A)), (10, note(10, C, B)), (12, note(12, C))]
    history.check_handovers(good, origin=ORIGIN)
    history.check_handovers(good[:2], origin=ORIGIN)  # C has signed nothing yet
    alone = [(3, note(3, A)), (6, note(6, B)), (10, note(10, C, B))]
    with pytest.raises(VerificationError, match="key change at record 4 has no handover"):
        history.check_handovers(alone, origin=ORIGIN)
