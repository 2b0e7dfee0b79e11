"""mDNS records: the TXT record we announce, and the checks on every record we resolve.

A resolved service is untrusted input: `sighting_from` returns a `Sighting` or raises
`Dropped` with the reason (unresolved, missing or bad id, our own, bad version, missing
nick, bad host or port, no usable address, TXT too big or not UTF-8). A nick that breaks
the nick rule becomes `unnamed-<id>` (lanchat/nicks.py), and the peer is still heard.
"""

from __future__ import annotations

import ipaddress
import logging
import unicodedata
from collections.abc import Sequence

from zeroconf import IPVersion, ServiceInfo

from lanchat.discovery.sighting import Dropped, DropReason, Sighting
from lanchat.identity import is_node_id
from lanchat.nicks import clean_received_nick

log = logging.getLogger(__name__)

SERVICE_TYPE = "_lanchat._tcp.local."

HOST_MAX_CHARS = 253
TXT_MAX_BYTES = 1300  # a sane TXT record is well under one Ethernet frame
TXT_STRING_MAX_BYTES = 255  # one `key=value` string in a TXT record (RFC 6763 s6.1)
INSTANCE_LABEL_MAX_BYTES = 56  # DNS labels stop at 63 bytes; room for zeroconf's "-NN" suffix

_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _is_clean_text(value: str) -> bool:
    """True if value has no control, line-separator or bidi-override characters."""
    return not any(
        unicodedata.category(ch) in ("Cc", "Zl", "Zp") or ch in _BIDI_CONTROLS for ch in value
    )


def _label_part(value: str) -> str:
    """Make text safe inside a DNS-SD instance label (no dots, no control chars)."""
    return "".join("-" if ch == "." else ch for ch in value if _is_clean_text(ch)).strip()


def instance_label(nick: str, host: str) -> str:
    """The instance label `<nick>@<host>`, cut to fit one DNS label."""
    label = f"{_label_part(nick) or 'lanchat'}@{_label_part(host) or 'host'}"
    return label.encode()[:INSTANCE_LABEL_MAX_BYTES].decode("utf-8", "ignore")


def fit_txt(key: str, value: str) -> str:
    """Cut value so `key=value` fits one TXT string (255 bytes), on a character boundary."""
    room = TXT_STRING_MAX_BYTES - len(key.encode()) - 1
    return value.encode()[:room].decode("utf-8", "ignore")


def decode_txt(info: ServiceInfo) -> dict[str, str]:
    """TXT keys and values as strict UTF-8 text; raise Dropped if too big or not UTF-8."""
    if len(info.text or b"") > TXT_MAX_BYTES:
        raise Dropped(DropReason.TXT_TOO_BIG)
    out: dict[str, str] = {}
    try:
        for key, value in info.properties.items():
            out[key.decode("utf-8")] = "" if value is None else value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Dropped(DropReason.TXT_NOT_UTF8) from exc
    return out


def local_networks(interfaces: Sequence[str]) -> list[ipaddress.IPv4Interface]:
    """Our interface addresses with their prefixes (from ifaddr; /32 when unknown)."""
    prefixes: dict[str, int] = {}
    try:
        import ifaddr

        for adapter in ifaddr.get_adapters():
            for ip in adapter.ips:
                if isinstance(ip.ip, str):
                    prefixes[ip.ip] = int(ip.network_prefix)
    except Exception as exc:  # ifaddr is best effort: no prefix means no subnet preference
        log.debug("mdns: cannot list interface prefixes: %s", exc)
    return [ipaddress.IPv4Interface(f"{ip}/{prefixes.get(ip, 32)}") for ip in interfaces]


def sighting_from(name: str, info: ServiceInfo | None, *, own_id: str,
                  networks: Sequence[ipaddress.IPv4Interface]) -> Sighting:
    """Validate a resolved service; raise Dropped with the reason if it is unusable."""
    if info is None:
        raise Dropped(DropReason.UNRESOLVED)
    txt = decode_txt(info)
    node_id = txt.get("id")
    if node_id is None:
        raise Dropped(DropReason.MISSING_ID)
    if not is_node_id(node_id):
        raise Dropped(DropReason.BAD_ID)
    if node_id == own_id:
        raise Dropped(DropReason.OWN)
    version = txt.get("v")
    if version is not None and not (
        version.isascii() and version.isdigit() and len(version) <= 6
    ):
        raise Dropped(DropReason.BAD_VERSION)
    nick = txt.get("nick")
    if nick is None:
        raise Dropped(DropReason.MISSING_NICK)
    nick = clean_received_nick(nick, node_id, source="mdns")
    host = txt.get("host")
    if host is None:  # not every announcer sends it: take it from `<nick>@<host>`
        host = name[: -len(SERVICE_TYPE) - 1].rpartition("@")[2]
    if len(host) > HOST_MAX_CHARS or not _is_clean_text(host):
        raise Dropped(DropReason.BAD_HOST)
    port = info.port
    if port is None or not 0 < port <= 0xFFFF:
        raise Dropped(DropReason.BAD_PORT)
    address, interface = pick_address(info, networks)
    return Sighting(
        node_id=node_id,
        nick=nick,
        host=host,
        address=address,
        port=port,
        instance=name,
        via="mdns",
        interface=interface,
    )


def pick_address(info: ServiceInfo,
                 networks: Sequence[ipaddress.IPv4Interface]) -> tuple[str, str]:
    """First IPv4 address in one of our subnets, else the first usable one."""
    ours_loopback = any(net.ip.is_loopback for net in networks)
    usable: list[ipaddress.IPv4Address] = []
    for text in info.parsed_addresses(IPVersion.V4Only):
        try:
            ip = ipaddress.IPv4Address(text)
        except ValueError:
            continue
        if ip.is_multicast or ip.is_unspecified or (ip.is_loopback and not ours_loopback):
            continue
        usable.append(ip)
    for ip in usable:
        for net in networks:
            if ip in net.network:
                return str(ip), str(net.ip)
    if not usable:
        raise Dropped(DropReason.NO_ADDRESS)
    return str(usable[0]), ""
