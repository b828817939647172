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

The log signs :func:`receipt_text` (``AuditLog.sign_note``). The two leaves are the
request record (the prompt, sealed) and the completion record (the answer, sealed)
exactly as the Merkle log holds them: an inclusion proof of those leaf hashes to a
signed checkpoint (``GET /audit/receipts/<request id>/proof``) shows
they are in the log that every monitor and witness sees. The first line keeps a
receipt from ever parsing as a checkpoint (whose second line is a tree size).

On the wire the note is base64url without padding: the ``X-Audit-Receipt`` header of a
whole answer, or an SSE comment ``: receipt <value>`` just before the stream's final
event (SSE clients, the official ``openai`` ones included, skip comment lines).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from appliance.audit.checkpoint import NoteVerifier, verify_note
from appliance.errors import VerificationError

__all__ = [
    "RECEIPT_HEADER",
    "Receipt",
    "ReceiptLeaf",
    "decode_receipt",
    "encode_receipt",
    "receipt_text",
    "verify_receipt",
]

RECEIPT_HEADER = "X-Audit-Receipt"
_KIND = "appliance.receipt/v1"


@dataclass(frozen=True)
class ReceiptLeaf:
    index: int
    leaf_hash: bytes


@dataclass(frozen=True)
class Receipt:
    origin: str
    request_id: str
    request: ReceiptLeaf
    completion: ReceiptLeaf


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


def verify_receipt(note: str, verifier: NoteVerifier, *, origin: str) -> Receipt:
    """The receipt, if the log's key signed it for this origin; VerificationError."""
    text = verify_note(note, verifier)
    lines = text.split("\n")[:-1]
    if len(lines) != 5 or lines[0] != _KIND:
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
    )
