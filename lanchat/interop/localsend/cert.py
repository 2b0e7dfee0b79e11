"""Our LocalSend certificate: self-signed (ECDSA P-256: made in a millisecond, where RSA
takes a tenth of a second per new home), kept in the home; and fingerprints: upper-case hex
SHA-256 of the DER certificate, as LocalSend computes them."""

from __future__ import annotations

import datetime
import hashlib
import ssl
from dataclasses import dataclass
from pathlib import Path

from lanchat.home import write_atomic

DIR = "localsend"
CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"
CERT_DAYS = 3650


def fingerprint_of(cert_der: bytes) -> str:
    """LocalSend's fingerprint of a certificate: SHA-256 of the DER, upper-case hex."""
    return hashlib.sha256(cert_der).hexdigest().upper()


@dataclass(frozen=True)
class LocalSendCert:
    """Where our certificate and key are, and its fingerprint."""

    cert_path: Path
    key_path: Path
    fingerprint: str

    @classmethod
    def load_or_create(cls, home: Path) -> LocalSendCert:
        """Load `<home>/localsend/{cert,key}.pem`, making them on first use."""
        folder = home / DIR
        folder.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = folder / CERT_FILE, folder / KEY_FILE
        if not (cert_path.exists() and key_path.exists()):
            _make(cert_path, key_path)
        # Read with the standard library: cryptography is loaded only to make the key.
        der = ssl.PEM_cert_to_DER_cert(cert_path.read_text(encoding="ascii"))
        return cls(cert_path, key_path, fingerprint_of(der))

    def server_context(self) -> ssl.SSLContext:
        """TLS for our HTTPS server; clients are not asked for certificates."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert_path, self.key_path)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """TLS for our requests: no CA check (peers are self-signed); the caller compares
        the server's certificate with the fingerprint it expects before sending a byte.
        Our certificate goes along as a client certificate, as LocalSend apps do."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.load_cert_chain(self.cert_path, self.key_path)
        return ctx


def _make(cert_path: Path, key_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "LocalSend")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
            .sign(key, hashes.SHA256()))
    pem_key = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    write_atomic(key_path, pem_key)
    write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM))
