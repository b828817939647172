"""appliance/audit/consistency.py ``consistency_proof_for`` (what
``GET /audit/consistency`` and ``appliance audit prove --consistency`` return), checked
on the consumer side by the standalone verifier (appliance/audit/bundle_verifier.py
``consistency``)."""

from __future__ import annotations

import base64
import json
from itertools import combinations_with_replacement
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from appliance.audit import bundle_verifier
from appliance.audit.bundle_verifier import BundleError, verify_consistency_file
from appliance.audit.checkpoint import NoteSigner, verify_checkpoint
from appliance.audit.consistency import consistency_proof_for
from appliance.audit.log import AuditLog
from appliance.audit.merkle import EMPTY_ROOT, verify_consistency
from appliance.db.tables import audit_log
from appliance.errors import InvalidRequest, ModelNotFound, VerificationError
from tests.support.audit import ORIGIN, content_record

VECTORS = json.loads(
    (Path(__file__).parents[2] / "vectors" / "merkle" / "rfc6962_ct.json").read_text()
)
CHECKPOINT_SIZES = (1, 2, 3, 5, 8, 13)  # every shape: powers of two, odd, one leaf
UNCOVERED = 2  # records appended after the last checkpoint


def b64(text: str) -> bytes:
    return base64.b64decode(text)


@pytest.fixture
def grown(log: AuditLog) -> AuditLog:
    """A log signed at each of CHECKPOINT_SIZES, with UNCOVERED records after."""
    for size in CHECKPOINT_SIZES:
        log.append_batch([content_record(i) for i in range(log.size, size)])
        assert log.checkpoint() is not None
    log.append_batch([content_record(i) for i in range(log.size, log.size + UNCOVERED)])
    return log


def prove(log: AuditLog, signer: NoteSigner, old: int, new: int | None = None) -> dict[str, Any]:
    return consistency_proof_for(log.store, old, new, origin=ORIGIN, verifier=signer.verifier())


def write(tmp_path: Path, document: dict[str, Any], name: str = "proof.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def check(document: dict[str, Any]) -> None:
    verify_consistency(
        document["old_size"],
        document["new_size"],
        b64(document["old_root_hash"]),
        b64(document["new_root_hash"]),
        [b64(h) for h in document["consistency_proof"]],
    )


def test_proofs_between_every_pair_of_checkpoints_verify(
    grown: AuditLog, signer: NoteSigner, tmp_path: Path
) -> None:
    key = signer.verifier().verifier_key()
    for old, new in combinations_with_replacement((0, *CHECKPOINT_SIZES), 2):
        document = prove(grown, signer, old, new)
        assert (document["origin"], document["old_size"], document["new_size"]) == (
            ORIGIN,
            old,
            new,
        )
        check(document)
        # The signed checkpoints ride along, with the roots the proof is for; no
        # checkpoint is ever signed for the empty tree.
        for side, size in (("old", old), ("new", new)):
            note, root = document[f"{side}_checkpoint"], b64(document[f"{side}_root_hash"])
            if size == 0:
                assert note is None and root == EMPTY_ROOT
                continue
            signed = verify_checkpoint(note, signer.verifier(), origin=ORIGIN)
            assert (signed.size, signed.root_hash) == (size, root)
        # And a monitor holding only the file and the key agrees.
        path = write(tmp_path, document)
        assert verify_consistency_file(path, key) == {
            "origin": ORIGIN,
            "old_size": old,
            "new_size": new,
        }


def test_to_defaults_to_the_latest_checkpoint(grown: AuditLog, signer: NoteSigner) -> None:
    document = prove(grown, signer, 3)
    assert document["new_size"] == CHECKPOINT_SIZES[-1]
    assert document == prove(grown, signer, 3, CHECKPOINT_SIZES[-1])


def test_without_a_checkpoint_the_default_is_refused(log: AuditLog, signer: NoteSigner) -> None:
    log.append(content_record(0))
    with pytest.raises(ModelNotFound) as caught:
        prove(log, signer, 0)
    assert caught.value.code == "no_checkpoint"
    # An explicit size is still proved; no signature covers it yet.
    document = prove(log, signer, 0, 1)
    assert document["new_checkpoint"] is None and document["consistency_proof"] == []


def test_boundaries(grown: AuditLog, signer: NoteSigner) -> None:
    empty = prove(grown, signer, 0, 5)
    assert empty["consistency_proof"] == [] and empty["old_checkpoint"] is None
    same = prove(grown, signer, 5, 5)
    assert same["consistency_proof"] == []
    assert same["old_root_hash"] == same["new_root_hash"]
    assert same["old_checkpoint"] == same["new_checkpoint"] is not None
    check(same)
    nothing = prove(grown, signer, 0, 0)
    assert (
        nothing["old_root_hash"]
        == nothing["new_root_hash"]
        == base64.b64encode(EMPTY_ROOT).decode()
    )
    # The whole log, past the last checkpoint: proved, but nothing signed covers it.
    size = CHECKPOINT_SIZES[-1] + UNCOVERED
    tail = prove(grown, signer, CHECKPOINT_SIZES[-1], size)
    assert tail["new_checkpoint"] is None and tail["old_checkpoint"] is not None
    check(tail)


@pytest.mark.parametrize(
    ("old", "new", "param", "words"),
    [
        (6, 5, "from", "larger than to"),
        (-1, 5, "from", "negative"),
        (0, -1, "to", "negative"),
        (3, CHECKPOINT_SIZES[-1] + UNCOVERED + 1, "to", "the log holds 15 records"),
        (3, 10**30, "to", "no tree of size"),
    ],
    ids=["from-past-to", "negative-from", "negative-to", "past-the-end", "huge"],
)
def test_sizes_out_of_range_are_refused(
    grown: AuditLog, signer: NoteSigner, old: int, new: int, param: str, words: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        prove(grown, signer, old, new)
    assert caught.value.param == param and words in caught.value.message
    assert caught.value.status_code == 400 and caught.value.code == "invalid_request"


def test_a_log_altered_under_a_checkpoint_is_not_proved(
    grown: AuditLog, signer: NoteSigner
) -> None:
    with grown.store.engine.begin() as connection:
        connection.execute(
            update(audit_log).where(audit_log.c.idx == 1).values(leaf_hash=b"\x07" * 32)
        )
    with pytest.raises(VerificationError, match="checkpoint signed at size 3"):
        prove(grown, signer, 3, 8)
    prove(grown, signer, 1, 1)  # below the change, the log still matches what was signed


def test_a_checkpoint_by_another_key_is_not_served(grown: AuditLog) -> None:
    stranger = NoteSigner.generate(ORIGIN)
    with pytest.raises(VerificationError, match="no signature by key"):
        consistency_proof_for(grown.store, 2, 5, origin=ORIGIN, verifier=stranger.verifier())


# -- the standalone verifier, on the monitor's side ---------------------------------------


def flipped(text: str) -> str:
    raw = b64(text)
    return base64.b64encode(bytes([raw[0] ^ 1]) + raw[1:]).decode()


def tamper(document: dict[str, Any], how: str) -> dict[str, Any]:
    changed = json.loads(json.dumps(document))
    proof = changed["consistency_proof"]
    if how == "flipped-first-hash":
        proof[0] = flipped(proof[0])
    elif how == "flipped-last-hash":
        proof[-1] = flipped(proof[-1])
    elif how == "truncated-proof":
        proof.pop()
    elif how == "extra-hash":
        proof.append(proof[0])
    elif how == "wrong-new-root":
        changed["new_root_hash"] = flipped(changed["new_root_hash"])
    elif how == "wrong-new-size":
        changed["new_size"] += 1
    elif how == "swapped-checkpoints":
        changed["old_checkpoint"], changed["new_checkpoint"] = (
            changed["new_checkpoint"],
            changed["old_checkpoint"],
        )
    elif how == "edited-checkpoint":
        changed["new_checkpoint"] = changed["new_checkpoint"].replace("\n13\n", "\n14\n", 1)
    return changed


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("flipped-first-hash", "tree size 5 to 13: consistency proof does not lead to the old"),
        ("flipped-last-hash", "tree size 5 to 13: consistency proof does not lead to the new"),
        ("truncated-proof", "consistency proof has too few hashes"),
        ("extra-hash", "consistency proof too long"),
        ("wrong-new-root", "the new root in the proof is not the new checkpoint's root"),
        ("wrong-new-size", "the new checkpoint is for tree size 13, the proof for 14"),
        ("swapped-checkpoints", "the new checkpoint is for tree size 5, the proof for 13"),
        ("edited-checkpoint", "new checkpoint: checkpoint signature is invalid"),
    ],
)
def test_a_tampered_proof_fails_naming_what_failed(
    grown: AuditLog, signer: NoteSigner, tmp_path: Path, how: str, message: str
) -> None:
    document = prove(grown, signer, 5, 13)
    path = write(tmp_path, tamper(document, how))
    with pytest.raises(BundleError) as caught:
        verify_consistency_file(path, signer.verifier().verifier_key())
    assert message in str(caught.value)


def test_an_unsigned_size_needs_the_monitors_own_checkpoint(
    grown: AuditLog, signer: NoteSigner, tmp_path: Path
) -> None:
    size = CHECKPOINT_SIZES[-1] + UNCOVERED
    key = signer.verifier().verifier_key()
    unsigned = write(tmp_path, prove(grown, signer, 8, size))
    with pytest.raises(BundleError, match=rf"new tree \(size {size}\): pass --new FILE"):
        verify_consistency_file(unsigned, key)
    # Once a checkpoint covers it, the monitor's copy of it checks the same proof.
    later = grown.checkpoint()
    assert later is not None and later.tree_size == size
    assert verify_consistency_file(unsigned, key, new_note=later.note)["new_size"] == size
    # The monitor's old copy is preferred over the one in the file: it must match.
    old_copy = prove(grown, signer, 5, 5)["old_checkpoint"]
    with pytest.raises(BundleError, match="old checkpoint is for tree size 5, the proof for 8"):
        verify_consistency_file(unsigned, key, old_note=old_copy, new_note=later.note)


def test_a_checkpoint_by_another_key_fails(
    grown: AuditLog, signer: NoteSigner, tmp_path: Path
) -> None:
    path = write(tmp_path, prove(grown, signer, 2, 8))
    stranger = NoteSigner.generate(ORIGIN).verifier().verifier_key()
    with pytest.raises(BundleError, match="new checkpoint: checkpoint is not signed by the given"):
        verify_consistency_file(path, stranger)


def test_main_takes_a_key_file_and_says_ok_or_failed(
    grown: AuditLog, signer: NoteSigner, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_file = tmp_path / "log.pub"
    key_file.write_text(signer.verifier().verifier_key() + "\n", encoding="ascii")
    document = prove(grown, signer, 3, 8)
    path = write(tmp_path, document)
    assert bundle_verifier.main(["consistency", str(path), "--key", str(key_file)]) == 0
    assert capsys.readouterr().out == f"OK: {ORIGIN} at tree size 8 extends tree size 3\n"

    bad = write(tmp_path, tamper(document, "flipped-last-hash"), "bad.json")
    assert bundle_verifier.main(["consistency", str(bad), "--key", str(key_file)]) == 1
    assert capsys.readouterr().err == (
        "FAILED: tree size 3 to 8: consistency proof does not lead to the new checkpoint's root\n"
    )


# -- the standalone verifier against RFC 6962 reference vectors ---------------------------


@pytest.mark.parametrize(
    "vector", VECTORS["consistency_proofs"], ids=lambda v: f"{v['size1']}-{v['size2']}"
)
def test_standalone_check_accepts_the_vectors(vector: dict[str, Any]) -> None:
    roots = [bytes.fromhex(x) for x in VECTORS["root_hashes"]]
    old, new = vector["size1"], vector["size2"]
    proof = [bytes.fromhex(x) for x in vector["proof"]]
    bundle_verifier.verify_consistency(old, new, roots[old], roots[new], proof)
    for i in range(len(proof)):
        bad = [*proof[:i], bytes([proof[i][0] ^ 8]) + proof[i][1:], *proof[i + 1 :]]
        with pytest.raises(BundleError):
            bundle_verifier.verify_consistency(old, new, roots[old], roots[new], bad)
    if old not in (0, new):
        with pytest.raises(BundleError):
            bundle_verifier.verify_consistency(old, new, roots[new], roots[old], proof)
