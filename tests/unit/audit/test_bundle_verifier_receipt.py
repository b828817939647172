"""appliance/audit/bundle_verifier.py ``receipt``: the standalone checks of an answer's
receipt against a small log built here (the gateway's end to end is
tests/integration/test_receipt_verify.py). Each altered part fails naming that part."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from appliance.audit import bundle_verifier
from appliance.audit.bundle_verifier import BundleError, answer_texts, read_receipt, verify_receipt
from appliance.audit.checkpoint import Checkpoint, NoteSigner, sign_checkpoint, sign_note
from appliance.audit.merkle import MerkleTree, leaf_hash
from appliance.audit.receipts import (
    Receipt,
    ReceiptLeaf,
    answer_message,
    commit_answer,
    encode_receipt,
    receipt_text,
)
from appliance.audit.records import leaf_bytes_of

ORIGIN = "appliance.test/audit"
ANSWER = "The capital of France is Paris."
SALT = bytes(range(32))
REQUEST_ID = "req-receipt-1"


def _leaf(index: int, event: str, params: dict[str, Any] | None = None) -> bytes:
    meta = {"request_id": REQUEST_ID if event else f"other-{index}", "event": event,
            "params": params}  # fmt: skip
    return leaf_bytes_of(index, meta, None, None)


class Log:
    """Ten leaves: the request at 3, its completion at 6; checkpoints at 5 and 10."""

    def __init__(self, answer: str = ANSWER) -> None:
        self.signer = NoteSigner.generate(ORIGIN)
        self.key = self.signer.verifier().verifier_key()
        self.commitment = commit_answer([answer], SALT)
        digest = base64.b64encode(self.commitment.digest).decode()
        self.leaves = [
            _leaf(3, "inference.request")
            if i == 3
            else _leaf(6, "inference.completion", {"answer_commitment": digest})
            if i == 6
            else _leaf(i, "")
            for i in range(10)
        ]
        self.tree = MerkleTree(leaf_hash(leaf) for leaf in self.leaves)
        self.old = self._checkpoint(5)
        self.new = self._checkpoint(10)

    def _checkpoint(self, size: int) -> str:
        return sign_checkpoint(Checkpoint(ORIGIN, size, self.tree.root(size)), self.signer)

    def receipt(self, *, answer: bool = True, signer: NoteSigner | None = None) -> str:
        receipt = Receipt(
            ORIGIN, REQUEST_ID,
            ReceiptLeaf(3, leaf_hash(self.leaves[3])), ReceiptLeaf(6, leaf_hash(self.leaves[6])),
            self.commitment if answer else None,
        )  # fmt: skip
        return encode_receipt(sign_note(receipt_text(receipt), signer or self.signer))

    def _part(self, index: int) -> dict[str, Any]:
        hashes = self.tree.inclusion_proof(index, 10).hashes
        return {
            "leaf_index": index,
            "leaf": self.leaves[index].decode(),
            "inclusion_proof": [base64.b64encode(h).decode() for h in hashes],
        }

    def proof(self) -> dict[str, Any]:
        b64 = base64.b64encode
        return {
            "request_id": REQUEST_ID,
            "origin": ORIGIN,
            "checkpoint": self.new,
            "request": self._part(3),
            "completion": self._part(6),
            "consistency": {
                "origin": ORIGIN, "old_size": 5, "new_size": 10,
                "old_root_hash": b64(self.tree.root(5)).decode(),
                "new_root_hash": b64(self.tree.root(10)).decode(),
                "consistency_proof": [
                    b64(h).decode() for h in self.tree.consistency_proof(5, 10).hashes
                ],
                "old_checkpoint": self.old, "new_checkpoint": self.new,
            },
        }  # fmt: skip


@pytest.fixture
def log() -> Log:
    return Log()


def test_a_good_receipt_proof_and_answer_verify(log: Log) -> None:
    result = verify_receipt(log.receipt(), log.key, log.proof(), ANSWER, log.old)
    assert (result["request"][0], result["completion"][0]) == (3, 6)
    assert (result["tree_size"], result["since"], result["answer_checked"]) == (10, 5, True)
    assert bundle_verifier.receipt_summary(result) == (
        f"receipt for request {REQUEST_ID} signed by {ORIGIN}; request 3 and completion 6 "
        "included at tree size 10; the log at 10 extends tree size 5; the answer text is "
        "the one sealed"
    )
    alone = verify_receipt(log.receipt(), log.key)  # no proof: the signature only
    assert "inclusion not checked" in bundle_verifier.receipt_summary(alone)


def _flip(text: str, at: int) -> str:
    """One base64 character changed for another (the bytes change, the form holds)."""
    return text[:at] + ("B" if text[at] == "A" else "A") + text[at + 1 :]


def _set(path: list[Any], change: Callable[[Any], Any]) -> Callable[[dict[str, Any]], None]:
    def apply(document: dict[str, Any]) -> None:
        holder = document
        for step in path[:-1]:
            holder = holder[step]
        holder[path[-1]] = change(holder[path[-1]])

    return apply


@pytest.mark.parametrize(
    ("alter", "named"),
    [
        (_set(["request", "inclusion_proof", 0], lambda h: _flip(h, 0)), "request inclusion"),
        (_set(["completion", "inclusion_proof", 1], lambda h: _flip(h, 5)),
         "completion inclusion"),
        (_set(["completion", "leaf_index"], lambda i: i + 1), "completion inclusion"),
        (_set(["checkpoint"], lambda n: n.replace("\n10\n", "\n11\n")), "checkpoint signature"),
        (_set(["consistency", "consistency_proof", 0], lambda h: _flip(h, 0)), "consistency"),
        (_set(["completion", "leaf"], lambda t: t.replace("inference.completion",
                                                            "inference.completioN")),
         "completion leaf"),
        (_set(["request"], lambda _part: None), "proof: malformed"),
    ],
    ids=["request-path", "completion-path", "wrong-leaf", "checkpoint", "consistency",
         "leaf-text", "truncated"],
)  # fmt: skip
def test_an_altered_proof_fails_naming_the_part(
    log: Log, alter: Callable[[dict[str, Any]], None], named: str
) -> None:
    proof = log.proof()
    alter(proof)
    with pytest.raises(BundleError, match=f"^{named}"):
        verify_receipt(log.receipt(), log.key, proof, ANSWER)


def test_a_leaf_committing_to_another_answer_fails() -> None:
    # The log signs a receipt whose answer line differs from its own sealed record.
    honest, other = Log(), Log("Lyon")
    proof = other.proof()
    receipt = Receipt(
        ORIGIN, REQUEST_ID,
        ReceiptLeaf(3, leaf_hash(other.leaves[3])), ReceiptLeaf(6, leaf_hash(other.leaves[6])),
        honest.commitment,
    )  # fmt: skip
    value = encode_receipt(sign_note(receipt_text(receipt), other.signer))
    with pytest.raises(BundleError, match=r"^answer commitment"):
        verify_receipt(value, other.key, proof)


def test_an_altered_receipt_fails_naming_the_receipt(log: Log) -> None:
    note = read_receipt(log.receipt())
    changed = encode_receipt(note.replace("completion 6", "completion 7"))
    with pytest.raises(BundleError, match=r"^receipt signature: invalid signature"):
        verify_receipt(changed, log.key, log.proof())
    stranger = log.receipt(signer=NoteSigner.generate(ORIGIN))
    with pytest.raises(BundleError, match=r"^receipt signature: not signed by the given key"):
        verify_receipt(stranger, log.key)
    value = log.receipt()
    for at in range(0, len(value) - 1, 7):  # any one character (the last may be padding bits)
        with pytest.raises(BundleError, match=r"^receipt"):
            verify_receipt(_flip(value, at), log.key)


def test_an_altered_answer_fails_and_an_old_receipt_says_it_cannot_tell(log: Log) -> None:
    with pytest.raises(BundleError, match=r"^answer text: not the answer"):
        verify_receipt(log.receipt(), log.key, answer=ANSWER.replace("Paris", "Parts"))
    assert verify_receipt(log.receipt(), log.key, answer=ANSWER + "\n")["answer_checked"]
    old = log.receipt(answer=False)
    assert verify_receipt(old, log.key, log.proof())["answer"] is None  # still verifies
    with pytest.raises(BundleError, match=r"^answer text: .*cannot be checked"):
        verify_receipt(old, log.key, answer=ANSWER)


def test_the_receipt_is_read_from_the_header_the_sse_line_or_the_note(log: Log) -> None:
    value = log.receipt()
    note = read_receipt(value)
    assert note.startswith("appliance.receipt/v1\n")
    assert read_receipt(f": receipt {value}\n") == note
    assert read_receipt(note.rstrip("\n")) == note
    with pytest.raises(BundleError, match=r"^receipt: not a receipt"):
        read_receipt("not base64!")


CHAT = {"choices": [
    {"index": 1, "message": {"role": "assistant", "content": "second"}},
    {"index": 0, "message": {"role": "assistant", "content": "first"}},
    {"index": 2, "message": {"role": "assistant", "content": None, "tool_calls": []}},
]}  # fmt: skip


def _sse(*chunks: dict[str, Any]) -> str:
    return "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + ": receipt x\n\ndata: [DONE]\n\n"


@pytest.mark.parametrize(
    ("saved", "texts"),
    [
        (json.dumps(CHAT), ["first", "second"]),  # by index; a tool-call choice has none
        (json.dumps({"choices": [{"index": 0, "text": "completion"}]}), ["completion"]),
        (json.dumps({"object": "response", "output": [
            {"type": "reasoning", "content": [{"type": "reasoning_text", "text": "hm"}]},
            {"type": "message", "content": [{"type": "output_text", "text": "Hi"},
                                            {"type": "output_text", "text": " there"}]},
        ]}), ["Hi there"]),
        (_sse({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
              {"choices": [{"index": 0, "delta": {"content": "Pa"}}]},
              {"choices": [{"index": 1, "delta": {"content": "x"}}]},
              {"choices": [{"index": 0, "delta": {"content": "ris"}}]},
              {"choices": [], "usage": {"total_tokens": 3}}), ["Paris", "x"]),
        (_sse({"type": "response.output_text.delta", "delta": "Hi"},
              {"type": "response.completed", "response": {"output": [
                  {"type": "message", "content": [{"type": "output_text", "text": "Hi!"}]}]}}),
         ["Hi!"]),
        ('{"name": "a JSON answer"}', ['{"name": "a JSON answer"}']),
        ("plain\r\ntext", ["plain\r\ntext"]),
    ],
    ids=["chat-n", "completion", "response", "chat-stream", "response-stream", "json-text",
         "plain"],
)  # fmt: skip
def test_the_answer_file_may_be_the_body_the_stream_or_the_text(
    saved: str, texts: list[str]
) -> None:
    assert answer_texts(saved)[0] == texts


@pytest.mark.parametrize(
    "texts", [["Tokyo"], ["a\nb", 'q"\\', "\x00\x1f\x7f", "é ✓ 日本 😀"], [], [""]]
)
def test_the_standalone_canonical_form_is_the_gateways(texts: list[str]) -> None:
    assert bundle_verifier.answer_message(texts) == answer_message(texts)


def test_the_command_line_names_the_failure(
    log: Log, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "receipt.txt").write_text(log.receipt() + "\n")
    (tmp_path / "log.pub").write_text(log.key + "\n")
    (tmp_path / "proof.json").write_text(json.dumps(log.proof()))
    (tmp_path / "answer.txt").write_bytes(ANSWER.encode())
    argv = ["receipt", str(tmp_path / "receipt.txt"), "--key", str(tmp_path / "log.pub"),
            "--proof", str(tmp_path / "proof.json")]  # fmt: skip
    assert bundle_verifier.main([*argv, "--answer", str(tmp_path / "answer.txt")]) == 0
    assert capsys.readouterr().out.startswith(f"OK: receipt for request {REQUEST_ID}")
    (tmp_path / "answer.txt").write_bytes(b"The capital of France is Lyon.")
    assert bundle_verifier.main([*argv, "--answer", str(tmp_path / "answer.txt")]) == 1
    assert capsys.readouterr().err == "FAILED: answer text: not the answer the receipt commits to\n"


def test_a_log_that_moved_its_key_is_checked_with_each_key_it_used(log: Log) -> None:
    # The receipt was signed before the move, the checkpoint after (keys into an HSM).
    earlier = NoteSigner.generate(ORIGIN)
    value = log.receipt(signer=earlier)
    both = f"{earlier.verifier().verifier_key()}\n{log.key}\n"
    assert verify_receipt(value, both, log.proof(), ANSWER)["tree_size"] == 10
    with pytest.raises(BundleError, match=r"^receipt signature: not signed by the given key"):
        verify_receipt(value, log.key, log.proof())
    with pytest.raises(BundleError, match=r"^checkpoint signature: checkpoint is not signed"):
        verify_receipt(value, earlier.verifier().verifier_key(), log.proof())
