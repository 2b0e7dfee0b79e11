"""The LocalSend peer kind: a node extension.

Discovery: multicast announcements both ways; a device is listed (kind "localsend") only
once an HTTPS `register` to it showed the certificate its fingerprint names, and it is
dropped after DEVICE_TTL_S without news. Receiving: each file of a prepare-upload becomes an
ordinary lanchat offer (the same checks, accept/decline, safe names, space check, limits);
the request is answered when every offer is decided; nothing is written before that, and
uploads are taken only for accepted files, from the sender's address, with its token.
Sending: see session.py.

Threads: the node's loop (multicast, timers, the peer table, sessions), the HTTPS server's
connection threads (`on_*`), and a small pool for outgoing requests.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, BinaryIO

from lanchat.interop import foreign_id
from lanchat.interop.localsend.cert import LocalSendCert
from lanchat.interop.localsend.client import LocalSendClient, LocalSendError, Target
from lanchat.interop.localsend.messages import PORT, DeviceInfo, PrepareUpload
from lanchat.interop.localsend.multicast import Multicast
from lanchat.interop.localsend.receive import write_upload
from lanchat.interop.localsend.server import LocalSendServer, open_server
from lanchat.interop.localsend.session import LocalSendSession, send_files
from lanchat.nicks import clean_received_nick
from lanchat.protocol import FileAnswer, FileCancel, FileOffer, Message, ProtocolError
from lanchat.transfer.wire import DataError

log = logging.getLogger(__name__)

KIND = "localsend"
ANNOUNCE_AT_S = (0.0, 1.0, 3.0)  # after start
ANNOUNCE_EVERY_S = 30.0
DEVICE_TTL_S = 120.0  # a device not heard for this long is gone
VERIFY_AGAIN_S = 60.0  # a verified device is not asked again sooner
VERIFY_RETRY_S = (1.0, 3.0)  # a device that announced before its server was up: ask again
EXPIRE_EVERY_S = 5.0
UPLOAD_WAIT_S = 60.0  # an accepted file whose upload does not start by then fails
DECISION_GRACE_S = 5.0  # waited beyond the offer timeout for the manager's answer
WORKERS = 4
LANCHAT_MODEL = "lanchat"  # our deviceModel: another lanchat is reached natively, not here


@dataclass
class _Device:
    info: DeviceInfo
    address: str
    heard: float
    verified: float = 0.0


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


class LocalSendKind:
    """Node extension for LocalSend devices."""

    kind = KIND

    def __init__(self) -> None:
        self.node: Any = None
        self.cert: LocalSendCert | None = None
        self.client: LocalSendClient | None = None
        self.multicast: Multicast | None = None
        self.servers: list[LocalSendServer] = []
        self.port = 0
        self.errors: list[str] = []
        self.counters: Counter[str] = Counter()
        self.pins: dict[str, str] = {}  # peer id -> PIN it asked for
        self._lock = threading.Lock()
        self._devices: dict[str, _Device] = {}
        self._sessions: dict[str, LocalSendSession] = {}
        self._incoming: dict[str, _Incoming] = {}
        self._decisions: dict[str, _Decision] = {}
        self._sending: set[str] = set()
        self._device_locks: dict[str, threading.Lock] = {}  # one transfer per device at a time
        self._verifying: set[str] = set()
        self._workers = threading.BoundedSemaphore(WORKERS)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timers: list[asyncio.TimerHandle] = []
        self._stopping = False

    # -- extension --------------------------------------------------------------------------

    async def start(self, node: Any) -> None:
        """Certificate, HTTPS server, multicast; announce now and then."""
        from lanchat.discovery.interfaces import usable_interfaces

        self.node = node
        self._loop = loop = asyncio.get_running_loop()
        try:
            ips = [i.ip for i in usable_interfaces(node.config.interfaces)]
        except ValueError as exc:
            self.errors.append(str(exc))
            return
        try:
            self.cert = await loop.run_in_executor(
                None, LocalSendCert.load_or_create, node.config.home)
        except (OSError, ValueError) as exc:
            self.errors.append(f"certificate: {exc}")
            return
        ctx = self.cert.server_context()
        port = 0
        for ip in ips:
            try:
                server = open_server(ip, (port,) if port else (PORT, 0), self, ctx)
            except OSError as exc:
                self.errors.append(f"HTTPS on {ip}: {exc.strerror or exc}")
                continue
            port = port or server.port
            server.serve_in_thread()
            self.servers.append(server)
        if not self.servers:
            return
        self.port = port
        self.client = LocalSendClient(self.cert, self.device())
        self.multicast = Multicast(self.device, ips, self._heard)
        await self.multicast.start()
        for delay in ANNOUNCE_AT_S:
            self._timers.append(loop.call_later(delay, self._announce_once))
        self._timers.append(loop.call_later(ANNOUNCE_EVERY_S, self._announce_again))
        self._timers.append(loop.call_later(EXPIRE_EVERY_S, self._expire))

    async def stop(self) -> None:
        """Stop announcing, serving and sending."""
        self._stopping = True
        for timer in self._timers:
            timer.cancel()
        if self.multicast is not None:
            self.multicast.close()
        with self._lock:
            for decision in self._decisions.values():
                decision.event.set()
        loop = asyncio.get_running_loop()
        for server in self.servers:
            await loop.run_in_executor(None, server.shutdown)
            server.server_close()
        # Worker threads are daemons: a request still waiting for a device (up to its
        # timeout) never holds up the exit.

    def on_message(self, session: Any, message: Message) -> bool:
        """LocalSend sessions take their control messages through `control`."""
        return False

    def set_nick(self, nick: str) -> None:
        """Our alias follows the nick."""
        if self.client is not None:
            self.client.me = self.device()

    def stats(self) -> dict[str, Any]:
        """What doctor shows and tests count."""
        with self._lock:
            devices = {d.info.alias: d.address for d in self._devices.values() if d.verified}
        return {"port": self.port, "fingerprint": self.cert.fingerprint if self.cert else "",
                "errors": list(self.errors), "devices": devices,
                "counters": dict(self.counters),
                "server": {k: v for s in self.servers for k, v in s.counters.items()},
                "multicast": {"interfaces": list(self.multicast.transports),
                              "errors": dict(self.multicast.errors),
                              "counters": dict(self.multicast.counters),
                              "heard": {ip: len(h) for ip, h in self.multicast.heard.items()}}
                if self.multicast is not None else None}

    def device(self) -> DeviceInfo:
        """How we describe ourselves to LocalSend devices."""
        assert self.cert is not None
        return DeviceInfo(alias=str(self.node.nick)[:64], fingerprint=self.cert.fingerprint,
                          port=self.port, protocol="https", device_model=LANCHAT_MODEL,
                          device_type="desktop")

    @property
    def manager(self) -> Any:
        """The node's transfer manager."""
        from lanchat.transfer import manager_of

        return manager_of(self.node)

    def _submit(self, fn: Callable[..., None], *args: Any) -> None:
        """Run `fn(*args)` on a daemon worker thread, at most WORKERS at once."""
        def run() -> None:
            with self._workers:
                try:
                    fn(*args)
                except Exception:  # noqa: BLE001 - a worker never dies silently
                    log.exception("localsend worker failed")
        threading.Thread(target=run, name="lanchat-localsend", daemon=True).start()

    # -- discovery (loop thread) ----------------------------------------------------------------

    def _announce_once(self) -> None:
        if self.multicast is not None and not self._stopping:
            self.multicast.announce()

    def _announce_again(self) -> None:
        self._announce_once()
        assert self._loop is not None
        self._timers.append(self._loop.call_later(ANNOUNCE_EVERY_S, self._announce_again))

    def _heard(self, info: DeviceInfo, address: str, announce: bool, ip: str) -> None:
        """A multicast device info (loop thread)."""
        if info.device_model == LANCHAT_MODEL or self._stopping:
            return
        self._sighting(info, address, announce_answer=announce)

    def _sighting(self, info: DeviceInfo, address: str, *, announce_answer: bool,
                  attempt: int = 0) -> None:
        peer_id = foreign_id(KIND, info.fingerprint.upper())
        now = time.time()
        with self._lock:
            device = self._devices.get(peer_id)
            fresh = (device is not None and device.address == address and device.info == info
                     and now - device.verified < VERIFY_AGAIN_S)
            if device is not None and device.address == address:
                device.heard = now
            if fresh or peer_id in self._verifying:
                return
            self._verifying.add(peer_id)
        self._submit(self._verify, peer_id, info, address, announce_answer, attempt)

    def _verify(self, peer_id: str, info: DeviceInfo, address: str, answer: bool,
                attempt: int = len(VERIFY_RETRY_S)) -> None:
        """Register with the device: its certificate must match its fingerprint (pool)."""
        assert self.client is not None and self._loop is not None
        target = Target(address, info.port, info.protocol, info.fingerprint)
        try:
            self.client.register(target)
            ok = True
        except LocalSendError as exc:
            ok = False
            self.counters[f"verify_{exc.kind}"] += 1
            log.info("localsend: %s at %s not verified: %s", info.alias, address, exc)
        finally:
            with self._lock:
                self._verifying.discard(peer_id)
        if ok:
            self._loop.call_soon_threadsafe(self._verified, peer_id, info, address)
            return
        if answer and self.multicast is not None:
            multicast = self.multicast
            self._loop.call_soon_threadsafe(lambda: multicast.announce(answer=True))
        if attempt < len(VERIFY_RETRY_S):
            self._loop.call_soon_threadsafe(self._retry_later, info, address, attempt)

    def _retry_later(self, info: DeviceInfo, address: str, attempt: int) -> None:
        assert self._loop is not None
        self._timers.append(self._loop.call_later(
            VERIFY_RETRY_S[attempt], lambda: self._sighting(
                info, address, announce_answer=False, attempt=attempt + 1)))

    def _verified(self, peer_id: str, info: DeviceInfo, address: str) -> None:
        if self._stopping:
            return
        now = time.time()
        with self._lock:
            self._devices[peer_id] = _Device(info, address, now, now)
        node = self.node
        alias = clean_received_nick(info.alias, peer_id, source=KIND)
        info = replace(info, alias=alias)
        node.presence.seen(peer_id, KIND, now, nick=alias,
                           host=info.device_model or alias, address=address,
                           port=info.port, kind=KIND, fingerprint=info.fingerprint.upper())
        session = self._sessions.get(peer_id)
        if session is None or not session.ready or session.address != address:
            if session is not None:
                session.close("moved")
            assert self._loop is not None
            session = LocalSendSession(node, self, peer_id, info, address, self._loop)
            self._sessions[peer_id] = session
            node.session_ready(session)

    def _expire(self) -> None:
        now = time.time()
        with self._lock:
            gone = [pid for pid, d in self._devices.items() if now - d.heard > DEVICE_TTL_S]
            for pid in gone:
                del self._devices[pid]
        for pid in gone:
            session = self._sessions.pop(pid, None)
            if session is not None:
                session.close("timeout")
            self.node.presence.lost(pid, KIND, "timeout", now)
        assert self._loop is not None
        if not self._stopping:
            self._timers.append(self._loop.call_later(EXPIRE_EVERY_S, self._expire))

    def set_pin(self, peer_id: str, pin: str) -> None:
        """The PIN a device asked for: sent with our next offers to it (any thread)."""
        with self._lock:
            self.pins[peer_id] = pin

    def dial(self, peer_id: str) -> None:
        """A LocalSend device needs no connection: it is listed or it is not."""

    def session_of(self, peer_id: str) -> LocalSendSession | None:
        """The listed device's session (loop thread)."""
        session = self._sessions.get(peer_id)
        return session if session is not None and session.ready else None

    # -- control from the transfer manager (loop thread) ---------------------------------------

    def control(self, session: LocalSendSession, message: Message) -> None:
        """Offers go out as prepare-upload; answers and cancels settle incoming ones."""
        if isinstance(message, FileOffer):
            with self._lock:
                if message.transfer in self._sending:
                    return
                self._sending.add(message.transfer)
            self._submit(self._send, session, message)
        elif isinstance(message, FileAnswer | FileCancel):
            with self._lock:
                decision = self._decisions.get(message.transfer)
            if decision is not None and not decision.event.is_set():
                decision.accept = isinstance(message, FileAnswer) and message.accept
                decision.reason = message.reason
                decision.event.set()

    def _send(self, session: LocalSendSession, offer: FileOffer) -> None:
        assert self.client is not None
        with self._lock:
            device = self._device_locks.setdefault(session.peer_id, threading.Lock())
        try:
            manager = self.manager
            with device:  # LocalSend devices take one transfer at a time (409 otherwise)
                with self._lock:
                    pin = self.pins.get(session.peer_id, "")
                send_files(self.client, manager, session, offer, pin=pin,
                           wait_s=manager.offer_timeout_s)
        except Exception:  # noqa: BLE001 - a worker never dies silently
            log.exception("localsend: sending %s failed", offer.transfer)
        finally:
            with self._lock:
                self._sending.discard(offer.transfer)

    # -- the HTTPS server's callbacks (connection threads) --------------------------------------

    def on_register(self, info: DeviceInfo, address: str) -> None:
        """A device introduced itself: verify it like an announcement."""
        if info.device_model == LANCHAT_MODEL or self._loop is None or self._stopping:
            return
        self._loop.call_soon_threadsafe(
            lambda: self._sighting(info, address, announce_answer=False))

    def _session_for(self, info: DeviceInfo, address: str) -> LocalSendSession | None:
        """The sender's session, verifying it first when it is new here."""
        peer_id = foreign_id(KIND, info.fingerprint.upper())
        node = self.node
        session = node.call(self.session_of, peer_id)
        if session is not None and session.address == address:
            return session
        self._verify(peer_id, info, address, False)
        session = node.call(self.session_of, peer_id)
        return session if session is not None and session.address == address else None

    def on_prepare(self, request: PrepareUpload, address: str,
                   pin: str | None) -> tuple[int, dict[str, Any] | None]:
        """Offer each file as a lanchat offer; answer when all are decided."""
        manager = self.manager
        if manager is None:
            return 403, {"message": "this node takes no files"}
        session = self._session_for(request.info, address)
        if session is None:
            self.counters["prepare_unverified"] += 1
            return 403, {"message": "your certificate does not match your fingerprint"}
        offers: list[tuple[str, FileOffer]] = []
        try:
            for meta in request.files:
                offer = FileOffer.from_dict({
                    "transfer": secrets.token_hex(8), "name": meta.file_name,
                    "size": meta.size, "sha256": meta.sha256, "files": [], "port": 0})
                offers.append((meta.id, offer))
        except ProtocolError as exc:
            self.counters["prepare_refused"] += 1
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
            self.counters["prepare_declined"] += 1
            return 403, {"message": "declined"}
        session_id = secrets.token_urlsafe(16)
        with self._lock:
            self._incoming[session_id] = incoming
        assert self._loop is not None
        for tid, _ in incoming.files.values():
            self._loop.call_soon_threadsafe(self._arm_upload_timer, tid, session.peer_id)
        return 200, {"sessionId": session_id,
                     "files": {fid: token for fid, (_, token) in incoming.files.items()}}

    def _arm_upload_timer(self, tid: str, peer_id: str) -> None:
        assert self._loop is not None
        self._timers.append(self._loop.call_later(UPLOAD_WAIT_S, self._upload_late, tid,
                                                  peer_id))

    def _upload_late(self, tid: str, peer_id: str) -> None:
        """An accepted file whose upload never came: fail it (loop thread, then pool)."""
        def check() -> None:
            manager = self.manager
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
            if incoming is None or entry is None or entry[1] != token \
                    or incoming.address != address:
                self.counters["upload_refused"] += 1
                return 403, "invalid token or address"
            del incoming.files[file_id]
            if not incoming.files:
                del self._incoming[session_id]
        manager = self.manager
        job = manager.claim_receive(entry[0], incoming.peer)
        if isinstance(job, str):
            self.counters["upload_refused"] += 1
            return 409, job
        try:
            sha = write_upload(job, manager, body, length)
        except DataError as exc:
            self.counters["upload_failed"] += 1
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
        manager = self.manager
        session = self.node.call(self.session_of, incoming.peer)
        if manager is not None and session is not None:
            for tid, _ in incoming.files.values():
                manager.on_message(session, FileCancel(tid, "cancelled by the sender"))


def attach(node: Any) -> LocalSendKind:
    """Add the LocalSend peer kind to a node that is not started yet."""
    kind = LocalSendKind()
    node.add_extension(kind)
    return kind
