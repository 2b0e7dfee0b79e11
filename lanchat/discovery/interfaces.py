"""Which local IPv4 interfaces lanchat announces, listens and multicasts on.

Default choice (no `--interface`): every IPv4 address on an interface that is up, is not
loopback, is not link-local (169.254/16), does not lack multicast, and is not a container
or VM bridge by name (docker*, br-*, virbr*, veth*, vboxnet*, vmnet*, cni*, flannel*,
podman*, lxcbr*, ...). One address per interface (the first, i.e. the primary). VPN
tunnels (tun*, tap*, wg*, ...) are not excluded by name: a tap bridge can be a real LAN;
point-to-point tunnels without IFF_MULTICAST (WireGuard, most tun) drop out by flag. When
nothing remains, loopback 127.0.0.1 is used so that nodes on one computer still meet.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import struct
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

LOOPBACK_IP = "127.0.0.1"
LOOPBACK_NAME = "lo"
LOOPBACK_PREFIXLEN = 8

# Interface name prefixes of container and VM bridges / virtual links: never chosen by default.
EXCLUDED_NAME_PREFIXES: tuple[str, ...] = (
    "docker",
    "br-",
    "virbr",
    "veth",
    "vboxnet",
    "vmnet",
    "cni",
    "flannel",
    "podman",
    "lxcbr",
    "lxdbr",
    "cali",
    "weave",
    "kube-",
)

_LINK_LOCAL = ipaddress.IPv4Network("169.254.0.0/16")
_LOOPBACK_NET = ipaddress.IPv4Network("127.0.0.0/8")

# Linux net/if.h flags and the SIOCGIFFLAGS ioctl
_IFF_UP = 0x1
_IFF_LOOPBACK = 0x8
_IFF_MULTICAST = 0x1000
_SIOCGIFFLAGS = 0x8913
_IFREQ_SIZE = 40


@dataclass(frozen=True)
class Interface:
    """One local IPv4 address we use, with its interface name and prefix length."""

    name: str
    ip: str
    prefixlen: int

    @property
    def network(self) -> ipaddress.IPv4Network:
        """The on-link subnet of this address."""
        return ipaddress.IPv4Interface(f"{self.ip}/{self.prefixlen}").network


@dataclass(frozen=True)
class HostAddress:
    """One IPv4 address as the host lists it; flags are None when the OS cannot tell."""

    name: str
    ip: str
    prefixlen: int
    up: bool | None = None
    loopback: bool | None = None
    multicast: bool | None = None


Enumerator = Callable[[], Iterable[HostAddress]]

LOOPBACK = Interface(LOOPBACK_NAME, LOOPBACK_IP, LOOPBACK_PREFIXLEN)


def _linux_flags(name: str) -> int | None:
    """The IFF_* flags of interface `name` via SIOCGIFFLAGS, or None if unavailable."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import fcntl

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            request = struct.pack("16sH", name.encode()[:15], 0).ljust(_IFREQ_SIZE, b"\0")
            answer = fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, request)
        flags: int = struct.unpack_from("16sH", answer)[1]
        return flags
    except (OSError, ValueError, ImportError) as exc:
        log.debug("interfaces: no flags for %s: %s", name, exc)
        return None


def host_addresses() -> list[HostAddress]:
    """Every IPv4 address of this host (via ifaddr), with up/loopback/multicast flags."""
    import ifaddr

    found: list[HostAddress] = []
    for adapter in ifaddr.get_adapters():
        flags = _linux_flags(adapter.name)
        for ip in adapter.ips:
            if not isinstance(ip.ip, str):  # IPv6 entries carry a tuple
                continue
            found.append(
                HostAddress(
                    name=adapter.nice_name or adapter.name,
                    ip=ip.ip,
                    prefixlen=int(ip.network_prefix),
                    up=None if flags is None else bool(flags & _IFF_UP),
                    loopback=None if flags is None else bool(flags & _IFF_LOOPBACK),
                    multicast=None if flags is None else bool(flags & _IFF_MULTICAST),
                )
            )
    return found


def excluded_reason(addr: HostAddress) -> str | None:
    """Why `addr` is not chosen by default, or None if it is usable."""
    ip = ipaddress.IPv4Address(addr.ip)
    if addr.up is False:
        return "down"
    if addr.loopback or ip in _LOOPBACK_NET:
        return "loopback"
    if ip in _LINK_LOCAL:
        return "link-local"
    if addr.name.startswith(EXCLUDED_NAME_PREFIXES):
        return "container/VM bridge"
    if addr.multicast is False:
        return "no multicast"
    return None


def _parse_ipv4(value: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value.strip()))
    except ValueError:
        raise ValueError(
            f"--interface {value!r} is not an IPv4 address; give one of this host's IPv4 addresses"
        ) from None


def usable_interfaces(
    requested: Sequence[str] = (), *, enumerate_addresses: Enumerator | None = None
) -> list[Interface]:
    """The interfaces to use: exactly `requested` (IPs) if given, else the default choice.

    Raises ValueError when a requested IP is not an IPv4 address of this host
    (127.0.0.1 is always accepted, as "lo").
    """
    listing = enumerate_addresses or host_addresses
    if requested:
        wanted = list(dict.fromkeys(_parse_ipv4(ip) for ip in requested))
        known = {a.ip: a for a in listing()} if wanted != [LOOPBACK_IP] else {}
        chosen: list[Interface] = []
        for ip in wanted:
            if ip == LOOPBACK_IP:
                chosen.append(LOOPBACK)
            elif ip in known:
                a = known[ip]
                chosen.append(Interface(a.name, a.ip, a.prefixlen))
            else:
                have = ", ".join(sorted(known)) or "none found"
                raise ValueError(
                    f"--interface {ip} is not an address of this host "
                    f"(this host has: {have}); pick one of those or 127.0.0.1"
                )
        return chosen

    chosen = []
    names: set[str] = set()
    for a in listing():
        reason = excluded_reason(a)
        if reason is not None:
            log.debug("interfaces: skipping %s %s (%s)", a.name, a.ip, reason)
            continue
        if a.name in names:  # one address per interface: the first is the primary
            log.debug("interfaces: skipping secondary address %s on %s", a.ip, a.name)
            continue
        names.add(a.name)
        chosen.append(Interface(a.name, a.ip, a.prefixlen))
    if not chosen:
        log.info("interfaces: no usable LAN interface; using loopback %s only", LOOPBACK_IP)
        return [LOOPBACK]
    return chosen
