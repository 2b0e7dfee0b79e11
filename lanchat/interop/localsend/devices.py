"""LocalSend discovery: multicast announcements both ways, and the devices listed.

A device is listed (kind "localsend", with a session) only once an HTTPS `register` to it
showed the certificate its fingerprint names; it is dropped after DEVICE_TTL_S without
news. Runs on the node's loop, but for `verify` (the request pool) and `session_for` (the
HTTPS server's connection threads).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from lanchat.interop import foreign_id
from lanchat.interop.localsend.client import LocalSendClient, LocalSendError, Target
from lanchat.interop.localsend.messages import DeviceInfo
from lanchat.interop.localsend.multicast import Multicast
from lanchat.interop.localsend.session import LocalSendSession
from lanchat.nicks import clean_received_nick

log = logging.getLogger(__name__)

KIND = "localsend"
ANNOUNCE_AT_S = (0.0, 1.0, 3.0)  # after start
ANNOUNCE_EVERY_S = 30.0
DEVICE_TTL_S = 120.0  # a device not heard for this long is gone
VERIFY_AGAIN_S = 60.0  # a verified device is not asked again sooner
VERIFY_RETRY_S = (1.0, 3.0)  # a device that announced before its server was up: ask again
EXPIRE_EVERY_S = 5.0
LANCHAT_MODEL = "lanchat"  # our deviceModel: another lanchat is reached natively, not here


@dataclass
class _Device:
    info: DeviceInfo
    address: str
    heard: float
    verified: float = 0.0


class Timers:
    """The loop timers of one part, to cancel at stop; the ones that ran leave the list
    as new ones come (re-armed timers added one handle each, for the node's life)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._handles: list[asyncio.TimerHandle] = []

    def later(self, delay: float, fn: Callable[..., Any], *args: Any) -> None:
        """Run `fn(*args)` on the loop after `delay` seconds (loop thread)."""
        now = self._loop.time()
        self._handles = [h for h in self._handles if not h.cancelled() and h.when() > now]
        self._handles.append(self._loop.call_later(delay, fn, *args))

    def cancel(self) -> None:
        """Cancel every timer not run yet."""
        for handle in self._handles:
            handle.cancel()
        self._handles = []


class Devices:
    """The devices heard, verified and listed, and our announcements."""

    def __init__(self, node: Any, kind: Any, client: LocalSendClient,
                 me: Callable[[], DeviceInfo], ips: list[str], *,
                 counters: Counter[str], submit: Callable[..., None]) -> None:
        self.node = node
        self._kind = kind  # what a device's session hands its file control to
        self.client = client
        self.multicast = Multicast(me, ips, self._heard)
        self._counters = counters
        self._submit = submit
        self._lock = threading.Lock()
        self._devices: dict[str, _Device] = {}
        self._sessions: dict[str, LocalSendSession] = {}
        self._verifying: set[str] = set()
        self._loop = asyncio.get_running_loop()
        self._timers = Timers(self._loop)
        self._stopping = False

    async def start(self) -> None:
        """Listen and announce now and then; expire silent devices."""
        await self.multicast.start()
        for delay in ANNOUNCE_AT_S:
            self._timers.later(delay, self._announce_once)
        self._timers.later(ANNOUNCE_EVERY_S, self._announce_again)
        self._timers.later(EXPIRE_EVERY_S, self._expire)

    def stop(self) -> None:
        """Stop announcing and listing."""
        self._stopping = True
        self._timers.cancel()
        self.multicast.close()

    def listed(self) -> dict[str, str]:
        """Verified devices: alias -> address."""
        with self._lock:
            return {d.info.alias: d.address for d in self._devices.values() if d.verified}

    def stats(self) -> dict[str, Any]:
        """The multicast side, for doctor."""
        m = self.multicast
        return {"interfaces": list(m.transports), "errors": dict(m.errors),
                "counters": dict(m.counters),
                "heard": {ip: len(h) for ip, h in m.heard.items()}}

    def _announce_once(self) -> None:
        if not self._stopping:
            self.multicast.announce()

    def _announce_again(self) -> None:
        self._announce_once()
        self._timers.later(ANNOUNCE_EVERY_S, self._announce_again)

    def _heard(self, info: DeviceInfo, address: str, announce: bool, ip: str) -> None:
        """A multicast device info (loop thread)."""
        if info.device_model == LANCHAT_MODEL or self._stopping:
            return
        self._sighting(info, address, announce_answer=announce)

    def on_register(self, info: DeviceInfo, address: str) -> None:
        """A device introduced itself (a server thread): verify it like an announcement."""
        if info.device_model == LANCHAT_MODEL or self._stopping:
            return
        self._loop.call_soon_threadsafe(
            lambda: self._sighting(info, address, announce_answer=False))

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
        target = Target(address, info.port, info.protocol, info.fingerprint)
        try:
            self.client.register(target)
            ok = True
        except LocalSendError as exc:
            ok = False
            self._counters[f"verify_{exc.kind}"] += 1
            log.info("localsend: %s at %s not verified: %s", info.alias, address, exc)
        finally:
            with self._lock:
                self._verifying.discard(peer_id)
        if ok:
            self._loop.call_soon_threadsafe(self._verified, peer_id, info, address)
            return
        if answer:
            multicast = self.multicast
            self._loop.call_soon_threadsafe(lambda: multicast.announce(answer=True))
        if attempt < len(VERIFY_RETRY_S):
            self._loop.call_soon_threadsafe(self._retry_later, info, address, attempt)

    def _retry_later(self, info: DeviceInfo, address: str, attempt: int) -> None:
        self._timers.later(VERIFY_RETRY_S[attempt], lambda: self._sighting(
            info, address, announce_answer=False, attempt=attempt + 1))

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
            session = LocalSendSession(node, self._kind, peer_id, info, address, self._loop)
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
        if not self._stopping:
            self._timers.later(EXPIRE_EVERY_S, self._expire)

    def session_of(self, peer_id: str) -> LocalSendSession | None:
        """The listed device's session (loop thread)."""
        session = self._sessions.get(peer_id)
        return session if session is not None and session.ready else None

    def session_for(self, info: DeviceInfo, address: str) -> LocalSendSession | None:
        """The sender's session, verifying it first when it is new here (a server
        thread)."""
        peer_id = foreign_id(KIND, info.fingerprint.upper())
        node = self.node
        session = node.call(self.session_of, peer_id)
        if session is not None and session.address == address:
            return session
        self._verify(peer_id, info, address, False)
        session = node.call(self.session_of, peer_id)
        return session if session is not None and session.address == address else None
