"""An audit record as one RFC 5424 message whose payload is syslog structured data, a
CEF line or an OCSF event: what ``appliance audit forward`` sends. Pure."""

from __future__ import annotations

from datetime import UTC

from appliance.audit.records import SealedEntry
from appliance.audit.siem import SiemOptions, entry_level, event_name, present, record_fields
from appliance.audit.siem_cef import cef_line
from appliance.audit.siem_ocsf import ocsf_json
from appliance.audit.siem_rfc5424 import FACILITIES, octet_counted, sd_element, syslog_message

__all__ = ["FACILITIES", "octet_counted", "render"]


def render(fmt: str, entry: SealedEntry, leaf_hash: bytes, options: SiemOptions) -> bytes:
    """One record as an RFC 5424 message (unframed) whose payload is ``fmt``:
    ``syslog`` (fields as STRUCTURED-DATA, a short MSG), ``cef`` (MSG is a CEF line) or
    ``ocsf`` (MSG is the OCSF JSON event)."""
    r = entry.record
    sd: list[str] = []
    if fmt == "syslog":
        fields = present(*record_fields(entry, leaf_hash, options.origin))
        sd = [sd_element(options.sd_id, [(k, str(v)) for k, v in fields.items()])]
        msg = f"{event_name(str(r.event), str(r.outcome))} (log index {entry.index})"
    elif fmt == "cef":
        msg = cef_line(entry, leaf_hash, options)
    elif fmt == "ocsf":
        msg = ocsf_json(entry, leaf_hash, options)
    else:
        raise ValueError(f"unknown SIEM format {fmt!r}: syslog, cef or ocsf")
    return syslog_message(
        facility=options.facility,
        severity=entry_level(entry).syslog_severity,
        timestamp=r.recorded_at.astimezone(UTC),
        hostname=options.hostname,
        app_name=options.app_name,
        procid=None,
        msgid=str(r.event),
        structured_data=sd,
        msg=msg,
    )
