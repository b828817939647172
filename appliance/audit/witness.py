"""A C2SP tlog-witness: it cosigns a log's checkpoint only when it is consistent with
the largest one it cosigned before, so a log cannot be rolled back or forked without a
witness noticing. Run it on another host, under another admin, than the appliance
(``appliance witness serve``).

Protocol (https://c2sp.org/tlog-witness, ``add-checkpoint``): the body is ``old <size>``,
up to 63 base64 consistency-proof lines, an empty line, then the signed checkpoint. The
answers: 404 unknown origin, 403 no valid signature by the log's key, 400 malformed or
old size above the checkpoint's, 409 old size is not the one last cosigned (body: that
size, ``text/x.tlog.size``) or same size with another root, 422 the proof does not
verify, 200 the cosignature line(s). Checking the old size and storing the new state
happen under one lock (the spec's rollback race).

Monitoring (this appliance's extension; the spec leaves it open): ``GET
/checkpoints/<origin>`` answers the latest cosigned checkpoint with the log's signature
and the witness's cosignature, which ``appliance audit verify`` checks the log against.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from appliance.audit.checkpoint import Checkpoint, NoteVerifier, verify_checkpoint
from appliance.audit.cosignature import Cosigner
from appliance.audit.merkle import verify_consistency
from appliance.errors import VerificationError

__all__ = ["SIZE_CONTENT_TYPE", "Witness", "WitnessAnswer", "WitnessState"]

SIZE_CONTENT_TYPE = "text/x.tlog.size"
MAX_BODY_BYTES = 64 * 1024
_MAX_PROOF_LINES = 63


@dataclass(frozen=True)
class WitnessAnswer:
    status: int
    body: str
    content_type: str = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class _Latest:
    size: int
    root_hash: bytes
    note: str  # the checkpoint as submitted, plus this witness's cosignature


class WitnessState:
    """The latest cosigned checkpoint per origin, in one JSON file replaced atomically
    (written and fsynced before a cosignature leaves)."""

    def __init__(self, path: Path):
        self._path = path
        self._latest: dict[str, _Latest] = {}
        if path.exists():
            for origin, item in json.loads(path.read_text(encoding="utf-8")).items():
                root = base64.b64decode(item["root_hash"])
                self._latest[origin] = _Latest(item["size"], root, item["note"])

    def get(self, origin: str) -> _Latest | None:
        return self._latest.get(origin)

    def put(self, origin: str, latest: _Latest) -> None:
        items = {**self._latest, origin: latest}
        data = {
            o: {"size": v.size, "root_hash": base64.b64encode(v.root_hash).decode(), "note": v.note}
            for o, v in items.items()
        }
        self._path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self._path.with_suffix(".tmp")
        with temporary.open("w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(self._path)
        self._latest = items


def _parse_request(body: bytes) -> tuple[int, list[bytes], str]:
    """(old size, proof hashes, signed checkpoint) or ValueError."""
    text = body.decode("utf-8")
    head, separator, note = text.partition("\n\n")
    if not separator:
        raise ValueError("no empty line before the checkpoint")
    lines = head.split("\n")
    word, _, number = lines[0].partition(" ")
    if word != "old" or not number.isdigit() or (number != "0" and number.startswith("0")):
        raise ValueError("the first line must be 'old <size>'")
    if len(lines) - 1 > _MAX_PROOF_LINES:
        raise ValueError(f"more than {_MAX_PROOF_LINES} consistency proof lines")
    try:
        proof = [base64.b64decode(line, validate=True) for line in lines[1:]]
    except (binascii.Error, ValueError) as exc:
        raise ValueError("a consistency proof line is not base64") from exc
    return int(number), proof, note


def _origin_of(note: str) -> str:
    return note.split("\n", 1)[0]


class Witness:
    def __init__(
        self,
        cosigner: Cosigner,
        logs: dict[str, NoteVerifier],
        state: WitnessState,
        clock_s: Callable[[], float],
    ):
        self._cosigner = cosigner
        self._logs = logs  # origin -> the log's checkpoint key
        self._state = state
        self._clock_s = clock_s
        self._lock = threading.Lock()

    @property
    def cosigner(self) -> Cosigner:
        return self._cosigner

    def latest(self, origin: str) -> str | None:
        found = self._state.get(origin)
        return None if found is None else found.note

    def add_checkpoint(self, body: bytes) -> WitnessAnswer:
        if len(body) > MAX_BODY_BYTES:
            return WitnessAnswer(400, "request too large\n")
        try:
            old_size, proof, note = _parse_request(body)
        except (UnicodeDecodeError, ValueError) as exc:
            return WitnessAnswer(400, f"malformed request: {exc}\n")
        origin = _origin_of(note)
        log_key = self._logs.get(origin)
        if log_key is None:
            return WitnessAnswer(404, f"unknown log origin {origin!r}\n")
        try:
            checkpoint = verify_checkpoint(note, log_key, origin=origin)
        except VerificationError as exc:
            return WitnessAnswer(403, f"checkpoint not signed by the log's key: {exc.message}\n")
        if old_size > checkpoint.size:
            return WitnessAnswer(400, "old size is larger than the checkpoint's size\n")
        if old_size == 0 and proof:
            return WitnessAnswer(400, "the proof must be empty when the old size is 0\n")
        with self._lock:
            return self._add_locked(origin, old_size, proof, note, checkpoint)

    def _add_locked(
        self, origin: str, old_size: int, proof: list[bytes], note: str, checkpoint: Checkpoint
    ) -> WitnessAnswer:
        latest = self._state.get(origin)
        known_size = latest.size if latest is not None else 0
        if old_size != known_size:
            return WitnessAnswer(409, f"{known_size}\n", SIZE_CONTENT_TYPE)
        if latest is not None and old_size == checkpoint.size:
            if latest.root_hash != checkpoint.root_hash:
                return WitnessAnswer(409, "same size, different root: the log forked\n")
        elif old_size > 0 and latest is not None:
            try:
                verify_consistency(
                    old_size, checkpoint.size, latest.root_hash, checkpoint.root_hash, proof
                )
            except VerificationError as exc:
                return WitnessAnswer(422, f"consistency proof does not verify: {exc.message}\n")
        line = self._cosigner.cosign(checkpoint.body(), int(self._clock_s()))
        own_name = f"\u2014 {self._cosigner.name} "
        kept = "".join(
            f"{sig}\n" for sig in note.split("\n\n", 1)[1].splitlines()
            if not sig.startswith(own_name)
        )  # fmt: skip
        stored = f"{checkpoint.body()}\n{kept}{line}"
        self._state.put(origin, _Latest(checkpoint.size, checkpoint.root_hash, stored))
        return WitnessAnswer(200, line)
