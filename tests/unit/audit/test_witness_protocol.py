"""appliance/audit/witness.py: every answer of C2SP tlog-witness add-checkpoint, the
state kept across restarts, and the cosignature it returns."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from appliance.audit.checkpoint import Checkpoint, NoteSigner, sign_checkpoint
from appliance.audit.cosignature import Cosigner, verify_cosignature
from appliance.audit.merkle import MerkleTree, leaf_hash
from appliance.audit.witness import SIZE_CONTENT_TYPE, Witness, WitnessState

ORIGIN = "appliance.test/audit"
NOW = 1_800_000_000


class Log:
    """A real Merkle tree and a signing key: checkpoints and proofs as a log makes them."""

    def __init__(self) -> None:
        self.signer = NoteSigner.generate(ORIGIN)
        self.tree = MerkleTree()

    def grow(self, count: int) -> None:
        for _ in range(count):
            self.tree.append(leaf_hash(f"record {self.tree.size}".encode()))

    def note(self, size: int | None = None, signer: NoteSigner | None = None) -> str:
        size = self.tree.size if size is None else size
        body = Checkpoint(ORIGIN, size, self.tree.root(size))
        return sign_checkpoint(body, signer or self.signer)

    def request(self, old: int, size: int | None = None, proof: list[bytes] | None = None) -> bytes:
        size = self.tree.size if size is None else size
        if proof is None:
            proof = self.tree.consistency_proof(old, size).hashes if old else []
        lines = [f"old {old}", *(base64.b64encode(h).decode() for h in proof)]
        return ("\n".join(lines) + "\n\n" + self.note(size)).encode()


@pytest.fixture
def log() -> Log:
    built = Log()
    built.grow(5)
    return built


def make_witness(log: Log, state: Path, cosigner: Cosigner | None = None) -> Witness:
    return Witness(
        cosigner or Cosigner.generate("witness.test/w1"),
        {ORIGIN: log.signer.verifier()},
        WitnessState(state),
        clock_s=lambda: NOW,
    )


def test_first_checkpoint_then_consistent_growth_are_cosigned(log: Log, tmp_path: Path) -> None:
    witness = make_witness(log, tmp_path / "state.json")
    first = witness.add_checkpoint(log.request(0))
    assert first.status == 200, first.body
    assert verify_cosignature(log.note() + first.body, witness.cosigner.verifier()) == NOW
    log.grow(7)
    second = witness.add_checkpoint(log.request(5))
    assert second.status == 200, second.body
    latest = witness.latest(ORIGIN)
    assert latest is not None and latest.startswith(f"{ORIGIN}\n12\n")
    assert verify_cosignature(latest, witness.cosigner.verifier()) == NOW


def test_the_state_survives_a_restart(log: Log, tmp_path: Path) -> None:
    cosigner = Cosigner.generate("witness.test/w1")
    assert (
        make_witness(log, tmp_path / "s.json", cosigner).add_checkpoint(log.request(0)).status
        == 200
    )
    restarted = make_witness(log, tmp_path / "s.json", cosigner)
    log.grow(1)
    stale = restarted.add_checkpoint(log.request(0))  # it remembers size 5
    assert (stale.status, stale.body, stale.content_type) == (409, "5\n", SIZE_CONTENT_TYPE)
    assert restarted.add_checkpoint(log.request(5)).status == 200


def test_a_rollback_is_refused_with_the_size_it_saw(log: Log, tmp_path: Path) -> None:
    witness = make_witness(log, tmp_path / "state.json")
    log.grow(5)
    assert witness.add_checkpoint(log.request(0)).status == 200  # size 10
    rolled_back = witness.add_checkpoint(log.request(0, size=5))
    assert rolled_back.status == 409 and rolled_back.body == "10\n"


def test_a_fork_at_the_same_size_is_refused(log: Log, tmp_path: Path) -> None:
    witness = make_witness(log, tmp_path / "state.json")
    assert witness.add_checkpoint(log.request(0)).status == 200
    fork = Log()
    fork.signer = log.signer  # the same key signing another history
    fork.grow(5)
    fork.tree.append(leaf_hash(b"forged"))  # size 6 differs from the log's size 6 below
    log.grow(1)
    answer = witness.add_checkpoint(fork.request(5, proof=log.tree.consistency_proof(5, 6).hashes))
    assert answer.status == 422
    same_size = Log()
    same_size.signer = log.signer
    same_size.grow(4)
    same_size.tree.append(leaf_hash(b"other"))
    assert witness.add_checkpoint(same_size.request(5, size=5, proof=[])).status == 409


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"old 01\n\nx", 400),  # leading zero
        (b"new 0\n\nx", 400),
        (b"old 0\nnot base64!\n\nx", 400),
        (b"old 0\n" + b"AAAA\n" * 64 + b"\nx", 400),  # over 63 proof lines
        (b"old 0", 400),  # no empty line
        (b"\xff\xfe", 400),
    ],
)
def test_malformed_requests_are_400(log: Log, tmp_path: Path, body: bytes, status: int) -> None:
    assert make_witness(log, tmp_path / "state.json").add_checkpoint(body).status == status


def test_unknown_origin_404_wrong_key_403_old_above_size_400(log: Log, tmp_path: Path) -> None:
    witness = make_witness(log, tmp_path / "state.json")
    stranger = NoteSigner.generate("other.test/audit")
    foreign = f"old 0\n\n{sign_checkpoint(Checkpoint('other.test/audit', 1, bytes(32)), stranger)}"
    assert witness.add_checkpoint(foreign.encode()).status == 404
    impostor = NoteSigner.generate(ORIGIN)
    forged = b"old 0\n\n" + log.note(signer=impostor).encode()
    assert witness.add_checkpoint(forged).status == 403
    assert witness.add_checkpoint(log.request(0)).status == 200
    assert witness.add_checkpoint(log.request(9, size=5, proof=[])).status == 400
    assert not (tmp_path / "other").exists()


def test_a_proof_from_zero_must_be_empty(log: Log, tmp_path: Path) -> None:
    witness = make_witness(log, tmp_path / "state.json")
    assert witness.add_checkpoint(log.request(0, proof=[bytes(32)])).status == 400
