"""LocalSend discovery: device info as JSON on 224.0.0.167:53317, one socket per interface.

We announce at start and every ANNOUNCE_EVERY_S with TTL 1 (LocalSend apps use more; one hop
is the LAN), and answer an announcement (the kind answers by HTTPS `register`, or here with
`announce: false` when that fails). Datagrams that are not a valid device info are dropped
and counted.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import time
from collections import Counter
from collections.abc import Callable

from lanchat.interop.localsend.messages import (
    MULTICAST_GROUP,
    PORT,
    DeviceInfo,
    MessageError,
    dump,
    load,
)

log = logging.getLogger(__name__)

MULTICAST_TTL = 1
MAX_DATAGRAM_BYTES = 8192
_IP_MULTICAST_ALL = getattr(socket, "IP_MULTICAST_ALL", 49)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, owner: Multicast, ip: str) -> None:
        self.owner = owner
        self.ip = ip

    def datagram_received(self, data: bytes, addr: tuple[str | bytes, int]) -> None:
        self.owner._received(self.ip, data, str(addr[0]))

    def error_received(self, exc: Exception) -> None:
        self.owner.counters["socket_errors"] += 1


class Multicast:
    """Announce `me` and report other devices: `on_device(info, address, announce, ip)`."""

    def __init__(self, me: Callable[[], DeviceInfo], ips: list[str],
                 on_device: Callable[[DeviceInfo, str, bool, str], None],
                 port: int = PORT, group: str = MULTICAST_GROUP) -> None:
        self._me = me
        self._ips = list(ips)
        self._on_device = on_device
        self._port = port
        self._group = group
        self.transports: dict[str, asyncio.DatagramTransport] = {}
        self.errors: dict[str, str] = {}
        self.counters: Counter[str] = Counter()
        self.heard: dict[str, dict[str, float]] = {}  # our ip -> sender address -> last time

    async def start(self) -> None:
        """Open a socket on every interface; one that fails is skipped and reported."""
        loop = asyncio.get_running_loop()
        for ip in self._ips:
            step = "create socket"
            sock: socket.socket | None = None
            try:
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
                sock.setblocking(False)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                sock.setsockopt(socket.IPPROTO_IP, _IP_MULTICAST_ALL, 0)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, MULTICAST_TTL)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
                step = "select multicast interface"
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(ip))
                step = f"bind {self._group}:{self._port}"
                sock.bind((self._group, self._port))
                step = f"join {self._group}"
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                                socket.inet_aton(self._group) + socket.inet_aton(ip))
                transport, _ = await loop.create_datagram_endpoint(
                    functools.partial(_Protocol, self, ip), sock=sock)
            except OSError as exc:
                if sock is not None:
                    sock.close()
                self.errors[ip] = f"{step} failed: {exc.strerror or exc}"
                log.warning("localsend multicast off on %s: %s", ip, self.errors[ip])
                continue
            self.transports[ip] = transport

    def announce(self, *, answer: bool = False, ip: str | None = None) -> None:
        """Send our device info (`announce: true`, or false as an answer)."""
        data = dump(self._me().to_json(announce=not answer))
        for where, transport in self.transports.items():
            if ip is not None and where != ip:
                continue
            try:
                transport.sendto(data, (self._group, self._port))
                self.counters["sent"] += 1
            except OSError as exc:
                self.counters["send_errors"] += 1
                self.errors[where] = f"send failed: {exc.strerror or exc}"

    def close(self) -> None:
        """Close the sockets."""
        for transport in self.transports.values():
            transport.close()
        self.transports.clear()

    def _received(self, ip: str, data: bytes, address: str) -> None:
        if len(data) > MAX_DATAGRAM_BYTES:
            self.counters["dropped_large"] += 1
            return
        try:
            body = load(data)
            info = DeviceInfo.from_json(body)
        except MessageError:
            self.counters["dropped_invalid"] += 1
            return
        if info.fingerprint.upper() == self._me().fingerprint:
            return  # our own
        self.counters["heard"] += 1
        self.heard.setdefault(ip, {})[address] = time.time()
        announce = isinstance(body, dict) and body.get("announce") is True
        self._on_device(info, address, announce, ip)
