"""appliance/audit/checkpoint.py: signed notes (golang.org/x/mod/sumdb/note vectors in
tests/vectors/note/) and C2SP checkpoints."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from appliance.audit.checkpoint import (
    Checkpoint,
    NoteSigner,
    NoteVerifier,
    parse_checkpoint,
    parse_note,
    sign_checkpoint,
    sign_note,
    verify_checkpoint,
    verify_note,
)
from appliance.errors import VerificationError

NOTE = json.loads((Path(__file__).parents[2] / "vectors" / "note" / "sumdb_note.json").read_text())
ROOT = bytes(range(32))


def test_signer_key_round_trips_and_matches_the_verifier_key() -> None:
    signer = NoteSigner.from_signer_key(NOTE["signer_key"])
    assert signer.signer_key() == NOTE["signer_key"]
    assert signer.verifier().verifier_key() == NOTE["verifier_key"]
    assert signer.key_id.hex() == "c74f20a3"
    assert "PRIVATE" not in repr(signer)


def test_signing_reproduces_the_published_signature() -> None:
    # Ed25519 is deterministic, so the note must equal the Go implementation's bytes.
    signer = NoteSigner.from_signer_key(NOTE["signer_key"])
    assert sign_note(NOTE["text"], signer) == NOTE["text"] + "\n" + NOTE["signature_line"]


def test_verify_ignores_signatures_by_unknown_keys() -> None:
    message = NOTE["text"] + "\n" + NOTE["signature_line"] + NOTE["other_signature_line"]
    for key in (NOTE["verifier_key"], NOTE["other_verifier_key"]):
        assert verify_note(message, NoteVerifier.from_verifier_key(key)) == NOTE["text"]
    assert len(parse_note(message).signatures) == 2


def test_verify_fails_without_a_signature_by_the_key() -> None:
    message = NOTE["text"] + "\n" + NOTE["other_signature_line"]
    with pytest.raises(VerificationError, match="no signature by key PeterNeumann"):
        verify_note(message, NoteVerifier.from_verifier_key(NOTE["verifier_key"]))


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(NOTE["text"], id="no-signature-block"),
        pytest.param(NOTE["text"] + "\n", id="empty-signature-block"),
        pytest.param(NOTE["text"] + "\n" + NOTE["signature_line"][:-1], id="no-final-newline"),
        pytest.param("\x01" + NOTE["text"] + "\n" + NOTE["signature_line"], id="control-char"),
        pytest.param(
            NOTE["text"] + "\n" + NOTE["signature_line"].replace("PeterNeumann", "Bad Name"),
            id="bad-name",
        ),
        pytest.param(
            NOTE["text"] + "\n" + NOTE["signature_line"] + "Unexpected line.\n", id="extra-line"
        ),
    ],
)
def test_malformed_notes_are_refused(message: str) -> None:
    with pytest.raises(VerificationError):
        verify_note(message, NoteVerifier.from_verifier_key(NOTE["verifier_key"]))


def test_altered_signature_or_text_fails() -> None:
    verifier = NoteVerifier.from_verifier_key(NOTE["verifier_key"])
    line = NOTE["signature_line"]
    with pytest.raises(VerificationError, match="invalid signature"):
        verify_note(NOTE["text"] + "\n" + line[:60] + "ABCD" + line[64:], verifier)
    with pytest.raises(VerificationError, match="invalid signature"):
        verify_note(NOTE["text"].replace("answer", "Answer") + "\n" + line, verifier)


@pytest.mark.parametrize("key", NOTE["bad_verifier_keys"] + ["", "a+b", "PeterNeumann+c74f20a3+!!"])
def test_bad_verifier_keys(key: str) -> None:
    with pytest.raises(VerificationError):
        NoteVerifier.from_verifier_key(key)


def test_mangled_verifier_key_is_refused() -> None:
    key = NOTE["verifier_key"]
    for i in range(len(key)):
        mangled = key[:i] + chr(ord(key[i]) + 1) + key[i + 1 :]
        with pytest.raises(VerificationError):
            NoteVerifier.from_verifier_key(mangled)


def test_checkpoint_body_format() -> None:
    body = Checkpoint("example.com/log42", 7, ROOT).body()
    assert body == f"example.com/log42\n7\n{base64.b64encode(ROOT).decode()}\n"
    assert parse_checkpoint(body) == Checkpoint("example.com/log42", 7, ROOT)


def test_checkpoint_sign_and_verify() -> None:
    signer = NoteSigner.generate("example.com/log42")
    note = sign_checkpoint(Checkpoint("example.com/log42", 7, ROOT), signer)
    got = verify_checkpoint(note, signer.verifier(), origin="example.com/log42")
    assert got == Checkpoint("example.com/log42", 7, ROOT)
    with pytest.raises(VerificationError, match="origin"):
        verify_checkpoint(note, signer.verifier(), origin="other/log")
    stranger = NoteSigner.generate("example.com/log42").verifier()
    with pytest.raises(VerificationError, match="no signature by key"):
        verify_checkpoint(note, stranger, origin="example.com/log42")


@pytest.mark.parametrize(
    "text",
    [
        "origin\n7\n",
        "\n7\n" + base64.b64encode(ROOT).decode() + "\n",
        "origin\n07\n" + base64.b64encode(ROOT).decode() + "\n",
        "origin\n-1\n" + base64.b64encode(ROOT).decode() + "\n",
        "origin\n7\n" + base64.b64encode(ROOT[:31]).decode() + "\n",
        "origin\n7\nnot base64!\n",
    ],
)
def test_malformed_checkpoints(text: str) -> None:
    with pytest.raises(VerificationError):
        parse_checkpoint(text)


def test_checkpoint_extension_lines_are_allowed() -> None:
    body = Checkpoint("o", 1, ROOT).body() + "extension\n"
    assert parse_checkpoint(body).size == 1


def test_signer_names_cannot_hold_spaces_or_plus() -> None:
    for name in ("a b", "a+b", ""):
        with pytest.raises(ValueError, match="invalid key name"):
            NoteSigner.generate(name)
