"""This node's long-term key, self-signed certificate, node id and fingerprints.

Node id = SHA-256 of the public key (SubjectPublicKeyInfo DER), base32, lower case, no
padding: 52 characters. The id *is* the key, so a key can never change under a known id;
pinning elsewhere maps addresses and nicks to ids.

`cryptography` (~10 MiB of RSS and tens of ms to import) is loaded only when a key is made,
read for signing, or a peer's key or certificate is checked: an idle node that knows its
id needs none of it. The id and public key are kept in `identity.json` beside the key,
bound to the key and certificate files by their SHA-256, so a changed file is read again.
"""

from __future__ import annotations

import base64
import datetime
import functools
import hashlib
import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lanchat.home import write_atomic

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ed25519

KEY_FILE = "node_key.pem"
CERT_FILE = "node_cert.pem"
ID_CACHE_FILE = "identity.json"
AUTH_CONTEXT = b"lanchat-auth-v1"
CERT_DAYS = 36500
NODE_ID_CHARS = 52
NODE_ID_RE = re.compile(rf"[a-z2-7]{{{NODE_ID_CHARS}}}")  # base32 of SHA-256, lower case


class IdentityError(Exception):
    """The key or certificate in the home cannot be used; the message says what to do."""


def is_node_id(value: object) -> bool:
    """True if `value` has the form of a node id (52 chars of lower-case base32)."""
    return isinstance(value, str) and NODE_ID_RE.fullmatch(value) is not None


def node_id_from_spki(spki_der: bytes) -> str:
    """Return the node id for a public key given as SubjectPublicKeyInfo DER."""
    digest = hashlib.sha256(spki_der).digest()
    return base64.b32encode(digest).decode().lower().rstrip("=")


def node_id_from_cert(cert_der: bytes) -> str:
    """Return the node id of the key inside a DER certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_der_x509_certificate(cert_der)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return node_id_from_spki(spki)


def short_id(node_id: str) -> str:
    """Return the short, grouped form people read: the first 16 characters in fours."""
    head = node_id[:16]
    return "-".join(head[i:i + 4] for i in range(0, len(head), 4))


def fingerprint(node_id: str) -> str:
    """Return the full id grouped in fours for reading aloud."""
    return " ".join(node_id[i:i + 4] for i in range(0, len(node_id), 4))


def safety_code(id_a: str, id_b: str) -> str:
    """A code both peers compute alike and read aloud: 30 digits in groups of five."""
    low, high = sorted((id_a, id_b))
    digest = hashlib.sha256(b"lanchat-safety-v1\0" + low.encode() + b"\0" + high.encode())
    number = int.from_bytes(digest.digest()[:16], "big") % 10**30
    digits = f"{number:030d}"
    return " ".join(digits[i:i + 5] for i in range(0, 30, 5))


def auth_payload(nonce: str, server_id: str, client_id: str) -> bytes:
    """Return the bytes a client signs: binds its key to this server and this nonce."""
    return b"\0".join((AUTH_CONTEXT, nonce.encode(), server_id.encode(), client_id.encode()))


def new_nonce() -> str:
    """Return a fresh random nonce for a handshake."""
    return base64.b64encode(secrets.token_bytes(24)).decode()


def verify_proof(key_b64: str, sig_b64: str, payload: bytes) -> str:
    """Check a peer's in-channel proof; return its node id or raise ValueError."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    try:
        spki = base64.b64decode(key_b64, validate=True)
        sig = base64.b64decode(sig_b64, validate=True)
        key = serialization.load_der_public_key(spki)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"unreadable key: {exc}") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise ValueError("key is not Ed25519")
    try:
        key.verify(sig, payload)
    except InvalidSignature:
        raise ValueError("signature does not verify") from None
    return node_id_from_spki(spki)


@dataclass(frozen=True)
class Identity:
    """The node's key pair and certificate, loaded from or created in the home (the
    private key itself only when something is first signed)."""

    cert_path: Path
    key_path: Path
    spki_der: bytes
    node_id: str

    @functools.cached_property
    def key(self) -> ed25519.Ed25519PrivateKey:
        """The private key, read from its file on first use."""
        key = _read_key(self.key_path)
        if _spki(key) != self.spki_der:
            raise IdentityError(f"{self.key_path} changed while lanchat ran; restart it")
        return key

    @property
    def short(self) -> str:
        """Short grouped id."""
        return short_id(self.node_id)

    @property
    def key_b64(self) -> str:
        """Public key (SPKI DER) in base64, as sent in `auth`."""
        return base64.b64encode(self.spki_der).decode()

    def sign(self, payload: bytes) -> str:
        """Sign and return the signature in base64."""
        return base64.b64encode(self.key.sign(payload)).decode()

    @classmethod
    def load_or_create(cls, home: Path) -> Identity:
        """Load the key from `home`, creating key and certificate on first start."""
        home.mkdir(parents=True, exist_ok=True)
        key_path, cert_path = home / KEY_FILE, home / CERT_FILE
        if key_path.exists() and os.stat(key_path).st_mode & 0o077:
            os.chmod(key_path, 0o600)
        cached = _cached(home)
        if cached is not None:
            return cls(cert_path, key_path, *cached)
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519

        if key_path.exists():
            key = _read_key(key_path)
        else:
            key = ed25519.Ed25519PrivateKey.generate()
            pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
            write_atomic(key_path, pem)
        spki = _spki(key)
        node_id = node_id_from_spki(spki)
        if not cert_path.exists() or _cert_id(cert_path) != node_id:
            _write_cert(key, node_id, cert_path)
        identity = cls(cert_path, key_path, spki, node_id)
        identity.__dict__["key"] = key  # read already (cached_property's slot)
        _write_cache(home, spki, node_id)
        return identity


def _read_key(path: Path) -> ed25519.Ed25519PrivateKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    try:
        loaded = serialization.load_pem_private_key(path.read_bytes(), None)
    except (ValueError, TypeError) as exc:
        raise IdentityError(
            f"cannot read {path}: {exc}; move it away to make a new identity") from None
    if not isinstance(loaded, ed25519.Ed25519PrivateKey):
        raise IdentityError(f"{path} is not an Ed25519 key; move it away")
    return loaded


def _spki(key: ed25519.Ed25519PrivateKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _files_digest(home: Path) -> str:
    """SHA-256 over the key and certificate files: what the cached id was made from."""
    h = hashlib.sha256()
    for name in (KEY_FILE, CERT_FILE):
        h.update((home / name).read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def _cached(home: Path) -> tuple[bytes, str] | None:
    """(SPKI, node id) from the cache, if it was made from the files as they are now."""
    try:
        d = json.loads((home / ID_CACHE_FILE).read_bytes())
        spki = base64.b64decode(d["spki"], validate=True)
        if d["files"] != _files_digest(home) or d["id"] != node_id_from_spki(spki):
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return spki, str(d["id"])


def _write_cache(home: Path, spki: bytes, node_id: str) -> None:
    data = {"id": node_id, "spki": base64.b64encode(spki).decode(),
            "files": _files_digest(home)}
    try:
        write_atomic(home / ID_CACHE_FILE, json.dumps(data).encode())
    except OSError:
        pass  # only a cache: the next start reads the key again


def _cert_id(path: Path) -> str | None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except ValueError:
        return None
    return node_id_from_cert(cert.public_bytes(serialization.Encoding.DER))


def _write_cert(key: ed25519.Ed25519PrivateKey, node_id: str, path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"lanchat {node_id[:16]}")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
            .sign(key, None))
    write_atomic(path, cert.public_bytes(serialization.Encoding.PEM))
