"""LocalSend v2 pieces on loopback: bodies checked before use, fingerprints as LocalSend
computes them, requests only to the certificate we expect, and the server's answers."""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from lanchat.interop.localsend.cert import LocalSendCert
from lanchat.interop.localsend.client import (
    LocalSendClient,
    LocalSendError,
    Target,
    plain_address,
)
from lanchat.interop.localsend.messages import (
    DeviceInfo,
    FileMeta,
    MessageError,
    PrepareUpload,
    UploadTicket,
    load,
)
from lanchat.interop.localsend.server import open_server


def test_device_info_is_checked_and_unknown_types_become_desktop() -> None:
    """A device info from the network: wrong types and sizes refused, odd values tamed."""
    info = DeviceInfo.from_json({"alias": "phone", "fingerprint": "A" * 64, "port": 53317,
                                 "protocol": "https", "deviceType": "toaster",
                                 "deviceModel": None, "download": "yes"})
    assert info.device_type == "desktop" and info.download is False
    for bad in ({"alias": 1, "fingerprint": "A" * 64}, {"alias": "x" * 65, "fingerprint": "A" * 64},
                {"alias": "a", "fingerprint": "A" * 64, "port": 0},
                {"alias": "a", "fingerprint": "A" * 64, "port": True},
                {"alias": "a", "fingerprint": "A" * 64, "protocol": "ftp"},
                {"alias": "a", "fingerprint": "<script>"}, [], "x"):
        with pytest.raises(MessageError):
            DeviceInfo.from_json(bad)


def test_prepare_upload_bodies_are_bounded() -> None:
    """Files: ids that match their keys, sizes that are sizes, at most 256 of them."""
    info = DeviceInfo("a", "A" * 64).to_json()
    ok = PrepareUpload.from_json({"info": info, "files": {
        "f": {"id": "f", "fileName": "a.txt", "size": 3, "sha256": "AB" * 32}}})
    assert ok.files[0].sha256 == "ab" * 32
    for files in ({}, {"f": {"id": "g", "fileName": "a", "size": 1}},
                  {"f": {"id": "f", "fileName": "a", "size": -1}},
                  {"f": {"id": "f", "fileName": "a", "size": "1"}},
                  {str(i): {"id": str(i), "fileName": "a", "size": 1} for i in range(257)}):
        with pytest.raises(MessageError):
            PrepareUpload.from_json({"info": info, "files": files})
    with pytest.raises(MessageError):
        load(b"{" * 10)
    with pytest.raises(MessageError):
        load(b" " * (2 << 20))


def test_fingerprint_is_upper_hex_sha256_of_the_der(tmp_path: Path) -> None:
    """Our fingerprint is what LocalSend computes from our certificate, and stays."""
    import ssl

    cert = LocalSendCert.load_or_create(tmp_path)
    der = ssl.PEM_cert_to_DER_cert(cert.cert_path.read_text())
    assert cert.fingerprint == hashlib.sha256(der).hexdigest().upper()
    assert re.fullmatch(r"[0-9A-F]{64}", cert.fingerprint)
    assert LocalSendCert.load_or_create(tmp_path).fingerprint == cert.fingerprint
    assert (cert.key_path.stat().st_mode & 0o777) == 0o600
    assert plain_address("::ffff:10.0.0.2") == "10.0.0.2"
    assert plain_address("10.0.0.3") == "10.0.0.3"


class _Receiver:
    """A device that accepts one file and records what reached it."""

    def __init__(self, info: DeviceInfo) -> None:
        self.info = info
        self.calls: list[str] = []
        self.data = b""

    def device(self) -> DeviceInfo:
        return self.info

    def on_register(self, info: DeviceInfo, address: str) -> None:
        self.calls.append(f"register {info.alias} {address}")

    def on_prepare(self, request: PrepareUpload, address: str,
                   pin: str | None) -> tuple[int, dict[str, Any] | None]:
        self.calls.append(f"prepare {pin}")
        if pin != "1234":
            return 401, None
        return 200, UploadTicket("s1", {request.files[0].id: "t1"}).to_json()

    def on_upload(self, session_id: str, file_id: str, token: str, address: str,
                  body: BinaryIO, length: int) -> tuple[int, str]:
        if (session_id, file_id, token) != ("s1", "f", "t1"):
            return 403, "no"
        self.data = body.read(length)
        return 200, ""

    def on_cancel(self, session_id: str, address: str) -> None:
        self.calls.append("cancel")


def test_client_and_server_talk_only_to_the_certificate_they_expect(tmp_path: Path) -> None:
    """A request to the wrong certificate is refused before a byte of it is sent; with the
    right one, register, a PIN, the upload and its hash go through."""
    server_cert = LocalSendCert.load_or_create(tmp_path / "s")
    client_cert = LocalSendCert.load_or_create(tmp_path / "c")
    receiver = _Receiver(DeviceInfo("srv", server_cert.fingerprint))
    server = open_server("127.0.0.1", (0,), receiver, server_cert.server_context())
    server.serve_in_thread()
    try:
        me = DeviceInfo("cli", client_cert.fingerprint)
        client = LocalSendClient(client_cert, me)
        wrong = Target("127.0.0.1", server.port, "https", client_cert.fingerprint)
        with pytest.raises(LocalSendError) as err:
            client.register(wrong)
        assert err.value.kind == "certificate_mismatch" and receiver.calls == []
        right = Target("127.0.0.1", server.port, "https", server_cert.fingerprint)
        assert client.register(right).alias == "srv"
        request = PrepareUpload(me, (FileMeta("f", "a.bin", 5),))
        with pytest.raises(LocalSendError) as err:
            client.prepare_upload(right, request, wait_s=5)
        assert err.value.kind == "pin_required"
        ticket = client.prepare_upload(right, request, pin="1234", wait_s=5)
        seen: list[int] = []
        sha = client.upload(right, ticket, "f", io.BytesIO(b"hello"), 5, seen.append)
        assert receiver.data == b"hello" and sha == hashlib.sha256(b"hello").hexdigest()
        assert seen[-1] == 5
        assert receiver.calls == ["register cli 127.0.0.1", "prepare None", "prepare 1234"]
    finally:
        server.shutdown()
        server.server_close()


def test_our_certificate_fingerprint_is_the_der_one_without_loading_cryptography(
        tmp_path: Path) -> None:
    """The fingerprint read at start (the PEM's DER, no cryptography import) is the SHA-256
    of the certificate's DER as cryptography encodes it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from lanchat.interop.localsend.cert import LocalSendCert, fingerprint_of

    made = LocalSendCert.load_or_create(tmp_path)
    again = LocalSendCert.load_or_create(tmp_path)
    der = x509.load_pem_x509_certificate(made.cert_path.read_bytes()).public_bytes(
        serialization.Encoding.DER)
    assert made.fingerprint == again.fingerprint == fingerprint_of(der)


def test_rearmed_timers_do_not_pile_up_and_a_foreign_token_is_just_wrong() -> None:
    """A timer that re-arms itself (announce, expire: every few seconds for the node's
    life) keeps one handle, not one per round; an upload token with any text in it is
    refused like a wrong one (compared in constant time, never an error)."""
    import asyncio

    from lanchat.interop.localsend.devices import Timers
    from lanchat.interop.localsend.inbox import _same

    async def story() -> int:
        timers = Timers(asyncio.get_running_loop())
        rounds = [0]
        done = asyncio.Event()

        def again() -> None:
            rounds[0] += 1
            if rounds[0] < 200:
                timers.later(0, again)
            else:
                done.set()

        timers.later(0, again)
        await done.wait()
        kept = len(timers._handles)
        timers.cancel()
        return kept

    assert asyncio.run(story()) <= 1
    assert _same("3f9a", "3f9a") and not _same("3f9a", "3f9b")
    assert not _same("3f9a", "\u00e9\ud800x")
