"""The session of one LocalSend device, and sending files to it.

LocalSend has no connection to keep: a `LocalSendSession` stands for "this device is
listed and verified"; it is what the node and the transfer manager talk to. File offers
sent through it become prepare-upload and upload requests, run on a worker thread; the
outcome goes back to the transfer manager exactly as a lanchat receiver's would.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from lanchat.api import Capability, CloseReason, SessionOwner
from lanchat.interop.localsend.client import LocalSendClient, LocalSendError, Target
from lanchat.interop.localsend.messages import DeviceInfo, FileMeta, PrepareUpload
from lanchat.protocol import FileAnswer, FileOffer, Message, SessionState
from lanchat.transfer.hashing import SHA256, tree_hash
from lanchat.transfer.stream import DataError
from lanchat.transfer.wire import Throttle

log = logging.getLogger(__name__)

BUSY_RETRIES = 5  # a device busy with another sender's transfer is asked again
BUSY_WAIT_S = 2.0
REASONS = {"declined": "declined", "busy": "the LocalSend device is busy with another transfer",
           "pin_required": "the LocalSend device asks for a PIN: /pin PEER CODE, then send again",
           "rate_limited": "the LocalSend device refused after wrong PINs; wait a minute",
           "nothing_to_send": "the LocalSend device already has these files"}


class LocalSendSession:
    """The session interface (lanchat/api.py PeerSession) for one LocalSend device."""

    kind = "localsend"
    capabilities = frozenset({Capability.FILES, Capability.CONTROL})
    expected_id: str | None = None

    def __init__(self, owner: SessionOwner, kind: Any, peer_id: str, info: DeviceInfo,
                 address: str, loop: asyncio.AbstractEventLoop) -> None:
        self.owner = owner
        self.localsend = kind
        self.peer_id = peer_id
        self.peer_nick = info.alias
        self.peer_port = info.port
        self.peer_instance = ""
        self.info = info
        self.address = address
        self.server = False
        self.dial_key: str | None = None
        self.last_sent_seq = 0
        self.state = SessionState.READY
        self.paused = False
        self.closed: asyncio.Future[None] = loop.create_future()

    def __repr__(self) -> str:
        return f"<LocalSendSession {self.info.alias!r} {self.address}>"

    @property
    def ready(self) -> bool:
        """Listed and verified."""
        return self.state is SessionState.READY

    @property
    def target(self) -> Target:
        """Where to send requests, and the certificate to expect."""
        return Target(self.address, self.info.port, self.info.protocol, self.info.fingerprint)

    def send(self, message: Message) -> None:
        """File control from the transfer manager (loop thread)."""
        self.localsend.control(self, message)

    def write_outbox(self, payloads: Any) -> None:
        """LocalSend carries no chat; the node does not queue any for it."""

    def ack(self, ids: list[str]) -> None:
        """No chat, no acks."""

    def set_nick(self, nick: str) -> None:
        """Our alias goes out in the next announcement."""

    def close(self, reason: str = "quit") -> None:
        """The device is no longer listed."""
        if self.state is SessionState.CLOSED:
            return
        self.state = SessionState.CLOSED
        if not self.closed.done():
            self.closed.set_result(None)
        how = CloseReason.TIMEOUT if reason == "timeout" else CloseReason.BYE
        self.owner.session_closed(self, how, reason)

    def fail(self, reason: str, *, tell_peer: bool = True) -> None:
        """Close because of a fault."""
        self.close(reason)

    def abort(self) -> None:
        """Same as close: there is no connection."""
        self.close("quit")

    def pause_reading(self) -> None:
        """Nothing streams in on this session."""

    def resume_reading(self) -> None:
        """Nothing streams in on this session."""


def send_files(client: LocalSendClient, manager: Any, session: LocalSendSession,
               offer: FileOffer, *, pin: str, wait_s: float) -> None:
    """Offer a transfer to a LocalSend device and upload what it accepts (worker thread)."""
    t = manager.get(offer.transfer)
    if t is None or t.direction != "out":
        return
    root = Path(t.source)
    if t.folder:
        sources = [(f"{t.name}/{i.path}", root.joinpath(*i.path.split("/")), i.size)
                   for i in t.items]
    else:
        sources = [(t.name, root, t.size)]
    files = tuple(FileMeta(str(n), name, size) for n, (name, _, size) in enumerate(sources))
    target = session.target
    for attempt in range(BUSY_RETRIES + 1):
        try:
            ticket = client.prepare_upload(target, PrepareUpload(client.me, files), pin=pin,
                                           wait_s=wait_s)
            break
        except LocalSendError as exc:
            if exc.kind == "busy" and attempt < BUSY_RETRIES:
                time.sleep(BUSY_WAIT_S)  # the device is busy with someone else's transfer
                continue
            reason = REASONS.get(exc.kind, f"{exc.kind}: {exc.detail}")
            manager.on_message(session, FileAnswer(t.id, False, reason=reason[:200]))
            return
    job = manager.claim(t.id, session.peer_id)
    if isinstance(job, str):
        client.cancel(target, ticket.session_id)
        return
    shas: list[str] = []
    done_before = 0
    throttle = Throttle(lambda n: manager.progress(job, n))
    try:
        for n, (_, path, size) in enumerate(sources):
            file_id = str(n)
            if file_id not in ticket.tokens:
                raise DataError(f"the LocalSend device took only {len(ticket.tokens)} of "
                                f"{len(sources)} files", resumable=False)

            def progress(k: int, base: int = done_before) -> None:
                if not manager.wanted(job.transfer, job.generation):
                    raise LocalSendError("cancelled", "cancelled")
                throttle(base + k)

            with open(path, "rb") as fh:
                shas.append(client.upload(target, ticket, file_id, fh, size, progress))
            done_before += size
    except (LocalSendError, OSError, DataError) as exc:
        client.cancel(target, ticket.session_id)
        error = exc if isinstance(exc, DataError) else DataError(str(exc), resumable=False)
        manager.send_failed(job, error)
        return
    throttle(t.size, True)
    result = shas[0] if not t.folder else tree_hash(tuple(i.path for i in t.items),
                                                    tuple(shas), SHA256)
    manager.sent(job, result, SHA256)  # LocalSend knows SHA-256 only
