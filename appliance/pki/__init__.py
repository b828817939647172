"""An internal certificate authority for encryption in transit."""

from __future__ import annotations

from appliance.pki.ca import IssuedFiles, init_ca, issue

__all__ = ["IssuedFiles", "init_ca", "issue"]
