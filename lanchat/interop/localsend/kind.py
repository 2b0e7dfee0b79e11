"""The LocalSend peer kind: a node extension.

Discovery (multicast both ways, devices listed once verified) is `devices.Devices`;
receiving (a prepare-upload becomes ordinary lanchat offers, uploads written by lanchat's
rules) is `inbox.Inbox`; sending is here and in session.py. This module starts and stops
them and hands the HTTPS server's callbacks and the transfer manager's control messages
to the one that owns them.

Threads: the node's loop (multicast, timers, the peer table, sessions), the HTTPS server's
connection threads (`on_*`), and a small pool for outgoing requests.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any, BinaryIO

from lanchat.interop.localsend.cert import LocalSendCert
from lanchat.interop.localsend.client import LocalSendClient
from lanchat.interop.localsend.devices import KIND, LANCHAT_MODEL, Devices
from lanchat.interop.localsend.inbox import Inbox
from lanchat.interop.localsend.messages import PORT, DeviceInfo, PrepareUpload
from lanchat.interop.localsend.server import LocalSendServer, open_server
from lanchat.interop.localsend.session import LocalSendSession, send_files
from lanchat.protocol import FileAnswer, FileCancel, FileOffer, Message

log = logging.getLogger(__name__)

__all__ = ["KIND", "LocalSendKind", "attach"]

WORKERS = 4
NOT_READY = (403, {"message": "this node is still starting; try again"})


class LocalSendKind:
    """Node extension for LocalSend devices."""

    kind = KIND

    def __init__(self) -> None:
        self.node: Any = None
        self.cert: LocalSendCert | None = None
        self.client: LocalSendClient | None = None
        self.devices: Devices | None = None
        self.inbox: Inbox | None = None
        self.servers: list[LocalSendServer] = []
        self.port = 0
        self.errors: list[str] = []
        self.counters: Counter[str] = Counter()
        self.pins: dict[str, str] = {}  # peer id -> PIN it asked for
        self._lock = threading.Lock()
        self._sending: set[str] = set()
        self._device_locks: dict[str, threading.Lock] = {}  # one transfer per device at a time
        self._workers = threading.BoundedSemaphore(WORKERS)

    # -- extension --------------------------------------------------------------------------

    async def start(self, node: Any) -> None:
        """Certificate, HTTPS server, multicast; announce now and then."""
        from lanchat.discovery.interfaces import usable_interfaces

        self.node = node
        loop = asyncio.get_running_loop()
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
        self.devices = Devices(node, self, self.client, self.device, ips,
                               counters=self.counters, submit=self._submit)
        self.inbox = Inbox(self.devices, lambda: self.manager, counters=self.counters,
                           submit=self._submit)
        await self.devices.start()

    async def stop(self) -> None:
        """Stop announcing, serving and sending."""
        if self.devices is not None:
            self.devices.stop()
        if self.inbox is not None:
            self.inbox.stop()
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
        devices = self.devices
        return {"port": self.port, "fingerprint": self.cert.fingerprint if self.cert else "",
                "errors": list(self.errors),
                "devices": devices.listed() if devices is not None else {},
                "counters": dict(self.counters),
                "server": {k: v for s in self.servers for k, v in s.counters.items()},
                "multicast": devices.stats() if devices is not None else None}

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

    # -- devices ---------------------------------------------------------------------------

    def set_pin(self, peer_id: str, pin: str) -> None:
        """The PIN a device asked for: sent with our next offers to it (any thread)."""
        with self._lock:
            self.pins[peer_id] = pin

    def dial(self, peer_id: str) -> None:
        """A LocalSend device needs no connection: it is listed or it is not."""

    def session_of(self, peer_id: str) -> LocalSendSession | None:
        """The listed device's session (loop thread)."""
        return self.devices.session_of(peer_id) if self.devices is not None else None

    # -- control from the transfer manager (loop thread) ---------------------------------------

    def control(self, session: LocalSendSession, message: Message) -> None:
        """Offers go out as prepare-upload; answers and cancels settle incoming ones."""
        if isinstance(message, FileOffer):
            with self._lock:
                if message.transfer in self._sending:
                    return
                self._sending.add(message.transfer)
            self._submit(self._send, session, message)
        elif isinstance(message, FileAnswer | FileCancel) and self.inbox is not None:
            self.inbox.decide(message)

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

    # -- the HTTPS server's callbacks (connection threads): devices and inbox -------------

    def on_register(self, info: DeviceInfo, address: str) -> None:
        """A device introduced itself: verify it like an announcement."""
        if self.devices is not None:
            self.devices.on_register(info, address)

    def on_prepare(self, request: PrepareUpload, address: str,
                   pin: str | None) -> tuple[int, dict[str, Any] | None]:
        """Offer each file as a lanchat offer; answer when all are decided."""
        if self.inbox is None:
            return NOT_READY
        return self.inbox.on_prepare(request, address, pin)

    def on_upload(self, session_id: str, file_id: str, token: str, address: str,
                  body: BinaryIO, length: int) -> tuple[int, str]:
        """Write one accepted file, by lanchat's rules."""
        if self.inbox is None:
            return NOT_READY[0], str(NOT_READY[1]["message"])
        return self.inbox.on_upload(session_id, file_id, token, address, body, length)

    def on_cancel(self, session_id: str, address: str) -> None:
        """The sender gave up: cancel what it had not uploaded."""
        if self.inbox is not None:
            self.inbox.on_cancel(session_id, address)


def attach(node: Any) -> LocalSendKind:
    """Add the LocalSend peer kind to a node that is not started yet."""
    kind = LocalSendKind()
    node.add_extension(kind)
    return kind
