"""The supervisor's side of an engine's mutual TLS: the client context its health
checks use when the engine requires client certificates (``engine.tls``)."""

from __future__ import annotations

import ssl
from pathlib import Path

from appliance.config import Settings

__all__ = ["health_check_context", "health_tls_from_settings"]


def health_check_context(*, ca_file: Path, cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """TLS 1.2+, the engine's chain verified against ``ca_file``, ``cert_file`` presented.

    The host name is not checked: the supervisor polls its own child on the port it
    chose (and found free before starting it), so an engine certificate issued for the
    node's DNS name still passes a check addressed to 127.0.0.1."""
    context = ssl.create_default_context(cafile=str(ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = False
    context.load_cert_chain(str(cert_file), str(key_file))
    return context


def health_tls_from_settings(settings: Settings) -> ssl.SSLContext | None:
    """None without ``engine.tls``. Else the gateway's client certificate
    (``gateway.engine_tls``) when set, or the engine's own (``appliance certs init``
    issues certificates for both server and client use)."""
    server = settings.engine.tls
    if server.cert_file is None or server.key_file is None or server.ca_file is None:
        return None
    client = settings.gateway.engine_tls
    if client.cert_file is not None and client.key_file is not None:
        cert_file, key_file = client.cert_file, client.key_file
    else:
        cert_file, key_file = server.cert_file, server.key_file
    return health_check_context(
        ca_file=client.ca_file or server.ca_file, cert_file=cert_file, key_file=key_file
    )
