"""The beacon's sockets: one receiving socket for every interface, one sending socket each.

Receiving: one socket bound to (group, beacon_port) with SO_REUSEADDR and SO_REUSEPORT
(several nodes on one host all receive), IP_MULTICAST_ALL=0, a membership on each
interface, and IP_PKTINFO, which names the interface each datagram came in on: that
interface's subnet decides whether the sender is on-link. (One socket per interface, each
bound to the group, does not keep interfaces apart: Linux hands a datagram from one
interface to the socket of another, where it looked off-link and was dropped, so a
two-homed peer was often known at one address only.) Sending: one socket per interface,
bound to its address, IP_MULTICAST_IF set to it (sends leave only there), TTL 1, loopback
on. An interface that cannot be set up is skipped, logged and reported by its `Link`; a
failing send is counted, never fatal. Everything runs on the caller's asyncio loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import struct
import sys
from collections.abc import Callable, Sequence
from typing import Any

from lanchat.discovery.beacon_wire import MAX_DATAGRAM
from lanchat.discovery.interfaces import Interface

log = logging.getLogger(__name__)

MULTICAST_TTL = 1  # never leaves the link
READS_PER_WAKE = 64  # datagrams read per readiness callback before the loop runs others

_IP_MULTICAST_ALL = getattr(socket, "IP_MULTICAST_ALL", 49)  # Linux only
_IS_LINUX = sys.platform.startswith("linux")
# struct in_pktinfo {int ipi_ifindex; struct in_addr ipi_spec_dst, ipi_addr;} (Linux)
_IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8 if _IS_LINUX else None)
_PKTINFO = struct.Struct("i4s4s")


class Link:
    """One interface: its sending socket, its index and counters."""

    def __init__(self, iface: Interface) -> None:
        self.iface = iface
        self.network = iface.network
        self.sock: socket.socket | None = None
        self.ifindex: int | None = None
        self.joined = False
        self.setup_error: str | None = None
        self.send_error: str | None = None
        self.sent = 0
        self.send_errors = 0
        self.received = 0
        self.accepted = 0

    def stats(self) -> dict[str, Any]:
        return {
            "name": self.iface.name,
            "ip": self.iface.ip,
            "joined": self.joined,
            "error": self.setup_error or self.send_error,
            "sent": self.sent,
            "send_errors": self.send_errors,
            "received": self.received,
            "accepted": self.accepted,
        }


# (the link it came in on, None for an interface we do not use; the datagram; its source)
OnDatagram = Callable[[Link | None, bytes, str], None]


class BeaconSockets:
    """The sockets of one beacon: `open()` on the loop, `send()` a round, `close()`."""

    def __init__(self, *, group: str, port: int, interfaces: Sequence[Interface]) -> None:
        self._group = group
        self._port = port
        unique = list({i.ip: i for i in interfaces}.values())
        self.links = [Link(i) for i in unique]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rx: socket.socket | None = None
        self._rx_error: str | None = None
        self._on_datagram: OnDatagram | None = None

    def open(self, loop: asyncio.AbstractEventLoop, on_datagram: OnDatagram) -> None:
        """Open the receiving socket and each interface's; log when none is usable."""
        self._loop = loop
        self._on_datagram = on_datagram
        self._open_receiver()
        for link in self.links:
            self._open(link)
        if not any(link.sock is not None for link in self.links):
            log.warning("beacon: no interface usable (%s); peers will not hear us by beacon",
                        "; ".join(f"{ln.iface.ip}: {ln.setup_error}" for ln in self.links)
                        or "none given")

    def send(self, data: bytes) -> None:
        """Send one datagram on every usable interface; failures are counted per link."""
        for link in self.links:
            if link.sock is None:
                continue
            try:
                link.sock.sendto(data, (self._group, self._port))
            except OSError as exc:
                link.send_errors += 1
                error = f"send failed: {exc.strerror or exc}"
                if error != link.send_error:
                    log.warning("beacon: %s on %s (%s)", error, link.iface.name, link.iface.ip)
                link.send_error = error
            else:
                link.sent += 1
                if link.send_error is not None:
                    log.info("beacon: sending on %s works again", link.iface.ip)
                    link.send_error = None

    def close(self) -> None:
        for link in self.links:
            if link.sock is not None:
                link.sock.close()
            link.sock = None
        if self._rx is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._rx.fileno())
            self._rx.close()
            self._rx = None

    def _open_receiver(self) -> None:
        """The one socket that hears every interface; on failure record why."""
        step = "create socket"
        sock: socket.socket | None = None
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
            sock.setblocking(False)
            step = "set socket options"
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if hasattr(socket, "SO_REUSEPORT"):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if _IS_LINUX:
                sock.setsockopt(socket.IPPROTO_IP, _IP_MULTICAST_ALL, 0)
            if _IP_PKTINFO is not None:
                sock.setsockopt(socket.IPPROTO_IP, _IP_PKTINFO, 1)
            step = f"bind port {self._port}"
            # Binding the group address keeps unicast to our port out (Windows cannot).
            sock.bind(("" if sys.platform == "win32" else self._group, self._port))
            assert self._loop is not None
            self._loop.add_reader(sock.fileno(), self._on_readable)
        except (OSError, NotImplementedError) as exc:
            if sock is not None:
                sock.close()
            self._rx_error = f"{step} failed: {getattr(exc, 'strerror', None) or exc}"
            log.warning("beacon: cannot listen for beacons: %s", self._rx_error)
            return
        self._rx = sock

    def _open(self, link: Link) -> None:
        """Join the group on one interface and set up its sending socket; on failure
        record why and skip it."""
        ip = link.iface.ip
        step = "join"
        sock: socket.socket | None = None
        try:
            if self._rx is None:
                raise OSError(self._rx_error or "no receiving socket")
            step = f"join {self._group}"
            mreq = socket.inet_aton(self._group) + socket.inet_aton(ip)
            self._rx.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
            link.joined = True
            with contextlib.suppress(OSError):
                link.ifindex = socket.if_nametoindex(link.iface.name)
            step = "create socket"
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
            sock.setblocking(False)
            step = "set socket options"
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, MULTICAST_TTL)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
            step = "select multicast interface"
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(ip))
            step = f"bind {ip}"
            sock.bind((ip, 0))
        except OSError as exc:
            if sock is not None:
                sock.close()
            link.setup_error = f"{step} failed: {exc.strerror or exc}"
            log.warning("beacon: skipping interface %s (%s): %s", link.iface.name, ip,
                        link.setup_error)
            return
        link.sock = sock
        log.debug("beacon: listening on %s (%s) for %s:%d", link.iface.name, ip, self._group,
                  self._port)

    def _on_readable(self) -> None:
        """Read what the receiving socket holds; each datagram goes to the link it came in
        on (IP_PKTINFO), or, without that, to the link whose subnet holds its source."""
        rx = self._rx
        if rx is None or self._on_datagram is None:
            return
        for _ in range(READS_PER_WAKE):
            try:
                data, ancillary, _, addr = rx.recvmsg(MAX_DATAGRAM + 1,
                                                      socket.CMSG_SPACE(_PKTINFO.size))
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("beacon: receive error: %s", exc)
                return
            source = str(addr[0])
            ifindex = next((_PKTINFO.unpack(d[:_PKTINFO.size])[0] for level, kind, d
                            in ancillary if level == socket.IPPROTO_IP
                            and kind == _IP_PKTINFO and len(d) >= _PKTINFO.size), None)
            self._on_datagram(self._arrival_link(ifindex, source), data, source)

    def _arrival_link(self, ifindex: int | None, source: str) -> Link | None:
        """The link a datagram came in on (None: an interface we do not use)."""
        if ifindex is not None:
            return next((ln for ln in self.links if ln.ifindex == ifindex), None)
        try:
            address = ipaddress.IPv4Address(source)
        except ValueError:
            return None
        return next((ln for ln in self.links if address in ln.network), None)
