"""Receipts: what the appliance hands a caller with every answer, so the caller can
later prove what was asked and answered, against the log, without trusting the
operator's word. Pure: no I/O.

A receipt is a C2SP signed note by the log's own key (the key its checkpoints carry).
Its text, one item per line::

    appliance.receipt/v1
    <log origin>
    request-id <the X-Request-Id of the call>
    request <leaf index> <base64 leaf hash>
    completion <leaf index> <base64 leaf hash>
    answer <base64 salt> <base64 digest>

The log signs :func:`receipt_text` (``AuditLog.sign_note``). The two leaves are the
request record (the prompt, sealed) and the completion record (the answer, sealed)
exactly as the Merkle log holds them: an inclusion proof of those leaf hashes to a
signed checkpoint (``GET /audit/receipts/<request id>/proof``) shows
they are in the log that every monitor and witness sees. The first line keeps a
receipt from ever parsing as a checkpoint (whose second line is a tree size).

The ``answer`` line (receipts issued before it existed have none) makes the answer's
text provable: ``digest = SHA-256(salt || answer_message(texts))`` over the texts as
the completion record seals them (its content's ``response`` list), with a random
32-byte salt drawn for this answer alone. The digest, base64, is also in the
completion record's clear metadata (``params.answer_commitment``), so it is in the
leaf; the salt exists only in the receipt the caller holds. Unsalted, a short answer
("Tokyo") could be guessed from the leaf by anyone, even after its content was
crypto-shredded; salted, only the receipt's holder can test an answer against it.
Tool calls, reasoning text and embeddings are not covered (docs/audit.md, "Receipts").

On the wire the note is base64url without padding: the ``X-Audit-Receipt`` header of a
whole answer, or an SSE comment ``: receipt <value>`` just before the stream's final
event (SSE clients, the official ``openai`` ones included, skip comment lines).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from appliance.audit.checkpoint import NoteVerifier, verify_note
from appliance.audit.records import canonical_json
from appliance.errors import VerificationError

__all__ = [
    "ANSWER_COMMITMENT_PARAM",
    "RECEIPT_HEADER",
    "SALT_BYTES",
    "AnswerCommitment",
    "Receipt",
    "ReceiptLeaf",
    "answer_digest",
    "answer_message",
    "check_answer",
    "commit_answer",
    "decode_receipt",
    "encode_receipt",
    "receipt_text",
    "verify_receipt",
]

RECEIPT_HEADER = "X-Audit-Receipt"
# The completion record's clear-text param holding the base64 answer digest.
ANSWER_COMMITMENT_PARAM = "answer_commitment"
SALT_BYTES = 32
_KIND = "appliance.receipt/v1"


@dataclass(frozen=True)
class ReceiptLeaf:
    index: int
    leaf_hash: bytes


@dataclass(frozen=True)
class AnswerCommitment:
    salt: bytes
    digest: bytes


@dataclass(frozen=True)
class Receipt:
    origin: str
    request_id: str
    request: ReceiptLeaf
    completion: ReceiptLeaf
    answer: AnswerCommitment | None = None


def answer_message(texts: Sequence[str]) -> bytes:
    """The canonical bytes of an answer: the JSON array of the text of each choice, in
    choice order, serialised as RFC 8785 (JCS) does for an array of strings (no
    whitespace, UTF-8, only ``"``, ``\\`` and control characters escaped). One choice
    is ``["The capital of France is Paris."]``."""
    return canonical_json(list(texts))


def answer_digest(salt: bytes, texts: Sequence[str]) -> bytes:
    return hashlib.sha256(salt + answer_message(texts)).digest()


def commit_answer(texts: Sequence[str], salt: bytes) -> AnswerCommitment:
    """The commitment to ``texts`` under ``salt`` (the caller draws it: this module
    stays pure)."""
    if len(salt) != SALT_BYTES:
        raise ValueError(f"an answer salt is {SALT_BYTES} bytes")
    return AnswerCommitment(salt, answer_digest(salt, texts))


def check_answer(receipt: Receipt, texts: Sequence[str]) -> None:
    """VerificationError unless ``texts`` are the answer the receipt commits to."""
    if receipt.answer is None:
        raise VerificationError(
            "answer text: the receipt carries no answer commitment (issued before "
            "commitments existed), so the answer text cannot be checked"
        )
    digest = answer_digest(receipt.answer.salt, texts)
    if not hmac.compare_digest(digest, receipt.answer.digest):
        raise VerificationError("answer text: not the answer the receipt commits to")


def _leaf_line(name: str, leaf: ReceiptLeaf) -> str:
    return f"{name} {leaf.index} {base64.b64encode(leaf.leaf_hash).decode()}"


def receipt_text(receipt: Receipt) -> str:
    if any(c.isspace() for c in receipt.request_id) or not receipt.request_id:
        raise ValueError("a receipt's request id is one non-empty word")
    lines = [
        _KIND,
        receipt.origin,
        f"request-id {receipt.request_id}",
        _leaf_line("request", receipt.request),
        _leaf_line("completion", receipt.completion),
    ]
    if receipt.answer is not None:
        salt = base64.b64encode(receipt.answer.salt).decode()
        digest = base64.b64encode(receipt.answer.digest).decode()
        lines.append(f"answer {salt} {digest}")
    return "\n".join(lines) + "\n"


def encode_receipt(note: str) -> str:
    return base64.urlsafe_b64encode(note.encode("utf-8")).rstrip(b"=").decode("ascii")


def decode_receipt(value: str) -> str:
    try:
        padded = value.strip() + "=" * (-len(value.strip()) % 4)
        return base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeError) as exc:
        raise VerificationError("malformed receipt: not base64url") from exc


def _leaf(line: str, name: str) -> ReceiptLeaf:
    word, _, rest = line.partition(" ")
    index_text, _, hash_text = rest.partition(" ")
    if word != name or not index_text.isdigit():
        raise VerificationError(f"malformed receipt: expected a {name} line")
    try:
        leaf_hash = base64.b64decode(hash_text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise VerificationError("malformed receipt: leaf hash is not base64") from exc
    if len(leaf_hash) != 32:
        raise VerificationError("malformed receipt: leaf hash is not 32 bytes")
    return ReceiptLeaf(int(index_text), leaf_hash)


def _answer(line: str) -> AnswerCommitment:
    word, salt_text, digest_text = [*line.split(" "), "", ""][:3]
    try:
        salt = base64.b64decode(salt_text, validate=True)
        digest = base64.b64decode(digest_text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise VerificationError("malformed receipt: answer salt or digest is not base64") from exc
    if word != "answer" or len(salt) != SALT_BYTES or len(digest) != 32:
        raise VerificationError("malformed receipt: expected an answer line")
    return AnswerCommitment(salt, digest)


def verify_receipt(note: str, verifier: NoteVerifier, *, origin: str) -> Receipt:
    """The receipt, if the log's key signed it for this origin; VerificationError."""
    text = verify_note(note, verifier)
    lines = text.split("\n")[:-1]
    if len(lines) not in (5, 6) or lines[0] != _KIND:
        raise VerificationError("not an appliance.receipt/v1 note")
    if lines[1] != origin:
        raise VerificationError(f"receipt origin {lines[1]!r} is not this log's {origin!r}")
    word, _, request_id = lines[2].partition(" ")
    if word != "request-id" or not request_id:
        raise VerificationError("malformed receipt: no request id")
    return Receipt(
        origin=origin,
        request_id=request_id,
        request=_leaf(lines[3], "request"),
        completion=_leaf(lines[4], "completion"),
        answer=_answer(lines[5]) if len(lines) == 6 else None,
    )
