"""Requests to a LocalSend peer (blocking; run in a worker thread): register,
prepare-upload, upload, cancel.

HTTPS with no CA check, as LocalSend peers are self-signed; before a byte of the request
is sent, the server's certificate must have the fingerprint we expect (the peer's id here).
"""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
import logging
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from lanchat.interop.localsend.cert import LocalSendCert, fingerprint_of
from lanchat.interop.localsend.messages import (
    API,
    MAX_BODY_BYTES,
    DeviceInfo,
    MessageError,
    PrepareUpload,
    UploadTicket,
    dump,
    load,
)

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 10.0  # connect and each read, except a prepare-upload's answer
UPLOAD_BLOCK_BYTES = 1 << 20  # one read of the file, one write to TLS


class LocalSendError(Exception):
    """A request failed; `status` is the HTTP status (0: no answer), `kind` a short word."""

    def __init__(self, kind: str, detail: str, status: int = 0) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.status = status


# What a status means for a sender (LocalSend v2).
STATUS_KINDS = {204: "nothing_to_send", 400: "bad_request", 401: "pin_required",
                403: "declined", 409: "busy", 429: "rate_limited", 500: "peer_error"}


def plain_address(address: str) -> str:
    """`::ffff:10.0.0.2` -> `10.0.0.2` (a dual-stack server's view of an IPv4 peer)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    mapped = getattr(ip, "ipv4_mapped", None)
    return str(mapped) if mapped is not None else str(ip)


@dataclass(frozen=True)
class Target:
    """Where a peer listens and which certificate it must show."""

    address: str
    port: int
    protocol: str
    fingerprint: str


class _HashingReader:
    """A file read for upload: hashed and counted as it goes."""

    def __init__(self, fh: BinaryIO, size: int, progress: Callable[[int], None]) -> None:
        self.fh = fh
        self.left = size
        self.done = 0
        self.hash = hashlib.sha256()
        self.progress = progress

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        want = self.left if n < 0 else min(n, self.left)
        data = self.fh.read(want)
        if not data:
            raise LocalSendError("file_changed", "the file got shorter while it was sent")
        self.left -= len(data)
        self.done += len(data)
        self.hash.update(data)
        self.progress(self.done)
        return data


class LocalSendClient:
    """Blocking requests from us (`me`) to LocalSend peers."""

    def __init__(self, cert: LocalSendCert, me: DeviceInfo) -> None:
        self.cert = cert
        self.me = me
        self._ctx = cert.client_context()

    def _connect(self, target: Target, timeout: float) -> http.client.HTTPConnection:
        host = plain_address(target.address)
        if target.protocol == "http":
            conn = http.client.HTTPConnection(host, target.port, timeout=timeout,
                                              blocksize=UPLOAD_BLOCK_BYTES)
            conn.connect()
            return conn
        conn = http.client.HTTPSConnection(host, target.port, timeout=timeout,
                                           context=self._ctx, blocksize=UPLOAD_BLOCK_BYTES)
        try:
            conn.connect()
        except OSError as exc:
            raise LocalSendError("unreachable", str(exc)) from None
        sock = conn.sock
        der = sock.getpeercert(binary_form=True) if sock is not None else None
        if der is None or fingerprint_of(der) != target.fingerprint.upper():
            conn.close()
            raise LocalSendError("certificate_mismatch",
                                 f"{host}:{target.port} did not show the certificate "
                                 f"{target.fingerprint[:16]}...")
        return conn

    def _call(self, target: Target, path: str, body: bytes | BinaryIO | None = None, *,
              length: int | None = None, query: dict[str, str] | None = None,
              timeout: float = REQUEST_TIMEOUT_S, answer_timeout: float | None = None,
              content_type: str = "application/json") -> tuple[int, bytes]:
        conn = self._connect(target, timeout)
        try:
            url = API + path + ("?" + urllib.parse.urlencode(query) if query else "")
            headers = {"Content-Type": content_type}
            if length is not None:
                headers["Content-Length"] = str(length)
            conn.request("POST", url, body=body, headers=headers)
            if answer_timeout is not None and conn.sock is not None:
                conn.sock.settimeout(answer_timeout)
            response = conn.getresponse()
            data = response.read(MAX_BODY_BYTES + 1)
            return response.status, data
        except LocalSendError:
            raise
        except (OSError, http.client.HTTPException) as exc:
            raise LocalSendError("unreachable", str(exc) or type(exc).__name__) from None
        finally:
            conn.close()

    def register(self, target: Target) -> DeviceInfo:
        """`POST /register`: tell the peer who we are; it answers who it is."""
        status, data = self._call(target, "/register", dump(self.me.to_json()))
        if status != 200:
            raise LocalSendError(STATUS_KINDS.get(status, "peer_error"),
                                 f"register answered {status}", status)
        try:
            return DeviceInfo.from_json(load(data))
        except MessageError as exc:
            raise LocalSendError("peer_error", f"bad register answer: {exc}") from None

    def prepare_upload(self, target: Target, request: PrepareUpload, *, pin: str = "",
                       wait_s: float) -> UploadTicket:
        """`POST /prepare-upload`; the answer comes when the peer's user decided."""
        query = {"pin": pin} if pin else None
        status, data = self._call(target, "/prepare-upload", dump(request.to_json()),
                                  query=query, answer_timeout=wait_s)
        if status != 200:
            raise LocalSendError(STATUS_KINDS.get(status, "peer_error"),
                                 f"prepare-upload answered {status}", status)
        try:
            return UploadTicket.from_json(load(data))
        except MessageError as exc:
            raise LocalSendError("peer_error", f"bad prepare-upload answer: {exc}") from None

    def upload(self, target: Target, ticket: UploadTicket, file_id: str, fh: BinaryIO,
               size: int, progress: Callable[[int], None]) -> str:
        """`POST /upload` of one file; return its SHA-256 (hex) as sent."""
        reader = _HashingReader(fh, size, progress)
        status, _ = self._call(
            target, "/upload", reader, length=size,  # type: ignore[arg-type]
            query={"sessionId": ticket.session_id, "fileId": file_id,
                   "token": ticket.tokens[file_id]},
            content_type="application/octet-stream")
        if status != 200:
            raise LocalSendError(STATUS_KINDS.get(status, "peer_error"),
                                 f"upload answered {status}", status)
        return reader.hash.hexdigest()

    def cancel(self, target: Target, session_id: str) -> None:
        """`POST /cancel`: stop the session on the peer (best effort)."""
        try:
            self._call(target, "/cancel", b"", query={"sessionId": session_id})
        except LocalSendError as exc:
            log.info("localsend cancel: %s", exc)
