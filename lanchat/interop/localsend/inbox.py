"""Files LocalSend devices send us: what the HTTPS server's callbacks do.

Each file of a prepare-upload becomes an ordinary lanchat offer (the same checks,
accept/decline, safe names, space check, limits); the request is answered when every offer
is decided; nothing is written before that, and uploads are taken only for accepted
files, from the sender's address, with its token. `on_*` run on the server's connection
threads; the upload timers on the node's loop.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from lanchat.interop.localsend.devices import Devices, Timers
from lanchat.interop.localsend.messages import PrepareUpload
from lanchat.interop.localsend.receive import write_upload
from lanchat.protocol import FileAnswer, FileCancel, FileOffer, ProtocolError
from lanchat.transfer.wire import DataError

UPLOAD_WAIT_S = 60.0  # an accepted file whose upload does not start by then fails
DECISION_GRACE_S = 5.0  # waited beyond the offer timeout for the manager's answer


def _same(expected: str, given: str) -> bool:
    """An upload's token as the peer sent it (any text) against ours, in constant time."""
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace"))


@dataclass
class _Incoming:
    """One prepare-upload we answered: its files' transfers and tokens."""

    peer: str
    address: str
    files: dict[str, tuple[str, str]] = field(default_factory=dict)  # file id -> (tid, token)


@dataclass
class _Decision:
    event: threading.Event = field(default_factory=threading.Event)
    accept: bool = False
    reason: str = ""


class Inbox:
    """Prepare-uploads waiting for the user's answer, and the uploads they allow."""

    def __init__(self, devices: Devices, manager: Callable[[], Any], *,
                 counters: Counter[str], submit: Callable[..., None]) -> None:
        self._devices = devices
        self._manager = manager
        self._counters = counters
        self._submit = submit
        self._lock = threading.Lock()
        self._incoming: dict[str, _Incoming] = {}
        self._decisions: dict[str, _Decision] = {}
        self._loop = asyncio.get_running_loop()
        self._timers = Timers(self._loop)

    def stop(self) -> None:
        """Stop the upload timers; let every request waiting for an answer go."""
        self._timers.cancel()
        with self._lock:
            for decision in self._decisions.values():
                decision.event.set()

    def decide(self, message: FileAnswer | FileCancel) -> None:
        """The manager's answer to one of the offers a prepare-upload became (loop)."""
        with self._lock:
            decision = self._decisions.get(message.transfer)
        if decision is not None and not decision.event.is_set():
            decision.accept = isinstance(message, FileAnswer) and message.accept
            decision.reason = message.reason
            decision.event.set()

    def on_prepare(self, request: PrepareUpload, address: str,
                   pin: str | None) -> tuple[int, dict[str, Any] | None]:
        """Offer each file as a lanchat offer; answer when all are decided."""
        manager = self._manager()
        if manager is None:
            return 403, {"message": "this node takes no files"}
        session = self._devices.session_for(request.info, address)
        if session is None:
            self._counters["prepare_unverified"] += 1
            return 403, {"message": "your certificate does not match your fingerprint"}
        offers: list[tuple[str, FileOffer]] = []
        try:
            for meta in request.files:
                offer = FileOffer.from_dict({
                    "transfer": secrets.token_hex(8), "name": meta.file_name,
                    "size": meta.size, "sha256": meta.sha256, "files": [], "port": 0})
                offers.append((meta.id, offer))
        except ProtocolError as exc:
            self._counters["prepare_refused"] += 1
            return 400, {"message": exc.reason}
        decisions = {offer.transfer: _Decision() for _, offer in offers}
        with self._lock:
            self._decisions.update(decisions)
        try:
            for _, offer in offers:
                manager.on_message(session, offer)
            deadline = time.monotonic() + manager.offer_timeout_s + DECISION_GRACE_S
            for decision in decisions.values():
                decision.event.wait(max(0.0, deadline - time.monotonic()))
        finally:
            with self._lock:
                for tid in decisions:
                    self._decisions.pop(tid, None)
        incoming = _Incoming(session.peer_id, address)
        for file_id, offer in offers:
            if decisions[offer.transfer].accept:
                incoming.files[file_id] = (offer.transfer, secrets.token_urlsafe(16))
        if not incoming.files:
            self._counters["prepare_declined"] += 1
            return 403, {"message": "declined"}
        session_id = secrets.token_urlsafe(16)
        with self._lock:
            self._incoming[session_id] = incoming
        for tid, _ in incoming.files.values():
            self._loop.call_soon_threadsafe(self._arm_upload_timer, tid, session.peer_id)
        return 200, {"sessionId": session_id,
                     "files": {fid: token for fid, (_, token) in incoming.files.items()}}

    def _arm_upload_timer(self, tid: str, peer_id: str) -> None:
        self._timers.later(UPLOAD_WAIT_S, self._upload_late, tid, peer_id)

    def _upload_late(self, tid: str, peer_id: str) -> None:
        """An accepted file whose upload never came: fail it (loop thread, then pool)."""
        def check() -> None:
            manager = self._manager()
            t = manager.get(tid) if manager is not None else None
            if t is None or t.state.finished:
                return
            job = manager.claim_receive(tid, peer_id)
            if not isinstance(job, str):
                manager.receive_failed(job, DataError("the LocalSend sender never uploaded",
                                                      resumable=False))
        self._submit(check)

    def on_upload(self, session_id: str, file_id: str, token: str, address: str,
                  body: BinaryIO, length: int) -> tuple[int, str]:
        """Write one accepted file, by lanchat's rules."""
        with self._lock:
            incoming = self._incoming.get(session_id)
            entry = incoming.files.get(file_id) if incoming is not None else None
            if incoming is None or entry is None or not _same(entry[1], token) \
                    or incoming.address != address:
                self._counters["upload_refused"] += 1
                return 403, "invalid token or address"
            del incoming.files[file_id]
            if not incoming.files:
                del self._incoming[session_id]
        manager = self._manager()
        job = manager.claim_receive(entry[0], incoming.peer)
        if isinstance(job, str):
            self._counters["upload_refused"] += 1
            return 409, job
        try:
            sha = write_upload(job, manager, body, length)
        except DataError as exc:
            self._counters["upload_failed"] += 1
            manager.receive_failed(job, exc)
            return 400, exc.reason
        manager.received(job, sha)
        return 200, ""

    def on_cancel(self, session_id: str, address: str) -> None:
        """The sender gave up: cancel what it had not uploaded."""
        with self._lock:
            incoming = self._incoming.get(session_id)
            if incoming is None or incoming.address != address:
                return
            del self._incoming[session_id]
        manager = self._manager()
        session = self._devices.node.call(self._devices.session_of, incoming.peer)
        if manager is not None and session is not None:
            for tid, _ in incoming.files.values():
                manager.on_message(session, FileCancel(tid, "cancelled by the sender"))
