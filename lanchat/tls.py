"""lanchat's TLS 1.3 settings, one place for the chat sessions, the file streams and the
benchmarks' baselines: the server shows its self-signed certificate, the client checks the
key against the peer's id (in the handshake), not against a CA."""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lanchat.identity import Identity


def server_context(identity: Identity) -> ssl.SSLContext:
    """TLS 1.3 server context showing this node's certificate."""
    return tls_server_context(str(identity.cert_path), str(identity.key_path))


def tls_server_context(cert: str, key: str) -> ssl.SSLContext:
    """lanchat's TLS 1.3 server settings for a certificate and key (also the benchmarks')."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(cert, key)
    ctx.verify_mode = ssl.CERT_NONE
    ctx.num_tickets = 0
    return ctx


def client_context() -> ssl.SSLContext:
    """TLS 1.3 client context; the server's key is checked against its id, not a CA."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx
