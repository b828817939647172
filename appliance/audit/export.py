"""``audit export``: an evidence bundle (zip) that verifies without the appliance.

The bundle holds the records of a time range (content encrypted unless revealed), an
inclusion proof for each against one signed checkpoint, every earlier checkpoint with
a consistency proof to it, the public key, and ``verify_bundle.py`` (Python +
``cryptography`` only).

With a SIEM format (``cef`` or ``ocsf``) the same records' metadata also goes into the
archive as one CEF line or one OCSF JSON event per record (the forwarder's rendering,
:mod:`appliance.audit.siem_cef`, :mod:`appliance.audit.siem_ocsf`), for a WORM archive
or a SIEM's bulk import. Each carries its log index and leaf hash, so a line can be matched
against ``records.jsonl`` and its proof; never the content, even with ``--reveal``.

With ``egress`` only the range's external-call records go in (issue #17,
:mod:`appliance.audit.egress_report`), with their summary as ``egress_summary.json``:
what the regulator asks for, proved like any other bundle.
"""

from __future__ import annotations

import base64
import json
import zipfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from appliance.audit.access import Actor, decrypt_entry, record_act, require_reason
from appliance.audit.checkpoint import verify_checkpoint
from appliance.audit.egress_report import is_external, summarise
from appliance.audit.key_history import read_key_history
from appliance.audit.log import AuditLog
from appliance.audit.merkle import MerkleTree
from appliance.audit.merkle import leaf_hash as merkle_leaf_hash
from appliance.audit.records import AuditEvent, SealedEntry, format_time, leaf_bytes
from appliance.audit.siem import SiemOptions
from appliance.audit.siem_cef import cef_line
from appliance.audit.siem_ocsf import OCSF_VERSION, ocsf_json
from appliance.errors import InvalidRequest, VerificationError

__all__ = ["EGRESS_SUMMARY_FILE", "SIEM_FILES", "ExportResult", "export_bundle", "siem_line"]

# The archive member holding the SIEM rendering, by format.
SIEM_FILES = {"cef": "events.cef", "ocsf": "events.ocsf.jsonl"}
EGRESS_SUMMARY_FILE = "egress_summary.json"

VERIFIER_SOURCE = Path(__file__).with_name("bundle_verifier.py")

README = """Audit evidence bundle from the sovereign inference appliance.

records.jsonl      one record per line: its Merkle leaf (canonical JSON), the encrypted
                   content envelope (base64) or, if revealed, the content, and its
                   inclusion proof against checkpoint.txt
checkpoint.txt     the signed checkpoint (C2SP tlog-checkpoint, Ed25519 signed note)
checkpoints.jsonl  earlier checkpoints, each with a consistency proof to checkpoint.txt
public_key.txt     the log's verifier key (<name>+<key id>+<key>)
key_history.json   (only if the log's key changed) each key and the first tree size it
                   signs; the first checkpoint under a new key carries the old key's
                   signature too
manifest.json      origin, time range, counts
verify_bundle.py   the standalone verifier: python verify_bundle.py THIS.zip --key KEY
events.cef         (with --format cef) the same records' metadata, one CEF line each
events.ocsf.jsonl  (with --format ocsf) the same as OCSF 1.8.0 API Activity events
egress_summary.json (with --egress: records.jsonl then holds only calls to external
                   providers) what left per team and provider, from those records

Compare public_key.txt with the key you hold independently (pass it with --key), and
checkpoint.txt with checkpoints a witness kept: a bundle can only prove what its key
signed.
"""


@dataclass(frozen=True)
class ExportResult:
    path: Path
    records: int
    tree_size: int
    revealed: bool
    siem_file: str | None = None


def siem_line(fmt: str, entry: SealedEntry, options: SiemOptions) -> str:
    """One record's metadata as a line of ``fmt`` (``cef`` or ``ocsf``)."""
    leaf = merkle_leaf_hash(leaf_bytes(entry))
    if fmt == "cef":
        return cef_line(entry, leaf, options)
    if fmt == "ocsf":
        return ocsf_json(entry, leaf, options)
    raise InvalidRequest(f"unknown export format {fmt!r}: bundle, cef or ocsf")


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def export_bundle(
    log: AuditLog,
    out: Path,
    *,
    since: datetime | None,
    until: datetime | None,
    actor: Actor,
    reveal_reason: str | None = None,
    siem: tuple[str, SiemOptions] | None = None,
    egress: bool = False,
) -> ExportResult:
    """Write the bundle, with ``siem`` (format, options) also its records' metadata in
    that SIEM format, with ``egress`` only external-call records and their summary; the
    export (and a reveal, with its reason) is recorded first."""
    if siem is not None and siem[0] not in SIEM_FILES:
        raise InvalidRequest(f"unknown export format {siem[0]!r}: bundle, cef or ocsf")
    if reveal_reason is not None:
        reveal_reason = require_reason(reveal_reason)
    details: dict[str, Any] = {
        "from": format_time(since) if since else None,
        "to": format_time(until) if until else None,
        "reveal": reveal_reason is not None,
    }
    if siem is not None:
        details["format"] = siem[0]
    if egress:
        details["egress"] = True
    if reveal_reason is not None:
        details["reason"] = reveal_reason
    record_act(log, actor, AuditEvent.AUDIT_EXPORT, details, path="audit export")
    log.checkpoint()  # cover everything, the export record included
    latest = log.store.latest_checkpoint()
    if latest is None:
        raise InvalidRequest("the audit log is empty")
    signed = verify_checkpoint(latest.note, log.verifier, origin=log.origin)
    tree = MerkleTree(leaf for i, leaf in log.store.iter_leaf_hashes() if i < signed.size)
    if tree.root() != signed.root_hash:
        raise VerificationError("stored leaves do not match the latest checkpoint; run verify")
    lines: list[str] = []
    events: list[str] = []
    exported: list[SealedEntry] = []
    for page in log.store.iter_pages():
        selected = [
            s
            for s in page
            if s.entry.index < signed.size
            and (since is None or s.entry.record.recorded_at >= since)
            and (until is None or s.entry.record.recorded_at < until)
            and (not egress or is_external(s.entry.record))
        ]
        if not selected:
            continue
        envelopes = log.store.envelopes(selected[0].entry.index, selected[-1].entry.index + 1)
        for stored in selected:
            entry = stored.entry
            item: dict[str, Any] = {
                "index": entry.index,
                "leaf": leaf_bytes(entry).decode("utf-8"),
                "proof": [_b64(h) for h in tree.inclusion_proof(entry.index, signed.size).hashes],
                "envelope": _b64(envelopes[entry.index]) if entry.index in envelopes else None,
            }
            if reveal_reason is not None and entry.content_sha256 is not None:
                # The export record above carries the viewer and the reason.
                content, status = decrypt_entry(log, entry, envelopes.get(entry.index))
                item["content"] = content
                item["content_status"] = status
            lines.append(json.dumps(item, ensure_ascii=False, sort_keys=True))
            if egress:
                exported.append(entry)
            if siem is not None:
                events.append(siem_line(siem[0], entry, siem[1]))
    earlier = []
    for checkpoint in log.store.checkpoints():
        if checkpoint.tree_size < signed.size:
            proof = tree.consistency_proof(checkpoint.tree_size, signed.size)
            earlier.append(
                json.dumps({"note": checkpoint.note, "proof": [_b64(h) for h in proof.hashes]})
            )
    manifest = {
        "origin": log.origin,
        "from": details["from"],
        "to": details["to"],
        "exported_at": format_time(log.now()),
        "exported_by": actor.username,
        "records": len(lines),
        "tree_size": signed.size,
        "revealed": reveal_reason is not None,
    }
    if egress:
        manifest["egress_summary"] = EGRESS_SUMMARY_FILE
    siem_file = SIEM_FILES[siem[0]] if siem is not None else None
    if siem is not None:
        manifest["siem_events"] = {
            "file": siem_file, "format": siem[0], "records": len(events),
            **({"ocsf_version": OCSF_VERSION} if siem[0] == "ocsf" else {}),
        }  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", json.dumps(manifest, indent=2) + "\n")
        archive.writestr("records.jsonl", "\n".join(lines) + ("\n" if lines else ""))
        archive.writestr("checkpoint.txt", latest.note)
        archive.writestr("checkpoints.jsonl", "\n".join(earlier) + ("\n" if earlier else ""))
        archive.writestr("public_key.txt", log.verifier.verifier_key() + "\n")
        history = read_key_history(log.store.engine, log.verifier)
        if len(history.epochs) > 1:  # the key changed (moved into an HSM): which signed what
            epochs = [epoch.describe() for epoch in history.epochs]
            archive.writestr("key_history.json", json.dumps(epochs, indent=2) + "\n")
        archive.writestr("verify_bundle.py", VERIFIER_SOURCE.read_text(encoding="utf-8"))
        archive.writestr("README.txt", README)
        if siem_file is not None:
            archive.writestr(siem_file, "\n".join(events) + ("\n" if events else ""))
        if egress:
            summary = summarise(entry.record for entry in exported).as_dict()
            summary |= {"from": details["from"], "to": details["to"]}
            archive.writestr(EGRESS_SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
    return ExportResult(out, len(lines), signed.size, reveal_reason is not None, siem_file)
