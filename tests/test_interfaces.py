"""Which interfaces lanchat uses: the default choice and --interface."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

import pytest

from lanchat.discovery.interfaces import (
    LOOPBACK,
    HostAddress,
    Interface,
    excluded_reason,
    host_addresses,
    usable_interfaces,
)


def fake(*addrs: HostAddress) -> Iterable[HostAddress]:
    return list(addrs)


def lan(name: str, ip: str, prefixlen: int = 24, **flags: bool) -> HostAddress:
    flags.setdefault("up", True)
    flags.setdefault("loopback", False)
    flags.setdefault("multicast", True)
    return HostAddress(name, ip, prefixlen, **flags)


LO = lan("lo", "127.0.0.1", 8, loopback=True, multicast=False)
ETH0 = lan("eth0", "192.168.1.20")
WLAN0 = lan("wlan0", "10.0.0.7", 16)


def test_a_laptop_uses_its_lan_interfaces_and_nothing_virtual() -> None:
    """Ethernet and Wi-Fi are chosen; loopback, link-local, bridges and down links are not."""
    host = fake(
        LO,
        ETH0,
        lan("eth0", "192.168.1.21"),  # secondary address on the same interface
        WLAN0,
        lan("eth1", "169.254.10.2", 16),
        lan("eth2", "192.168.9.2", up=False),
        lan("docker0", "172.17.0.1", 16),
        lan("br-1a2b3c", "172.18.0.1", 16),
        lan("virbr0", "192.168.122.1"),
        lan("veth12ab", "10.200.0.1"),
        lan("vboxnet0", "192.168.56.1"),
        lan("vmnet8", "192.168.200.1"),
        lan("cni0", "10.88.0.1", 16),
        lan("flannel.1", "10.244.0.0", 32),
        lan("podman0", "10.89.0.1"),
        lan("lxcbr0", "10.0.3.1"),
        lan("wg0", "10.8.0.2", 32, multicast=False),  # point-to-point VPN without multicast
        lan("tap0", "10.9.0.2"),  # a tap bridge may be a real LAN: kept
    )
    chosen = usable_interfaces(enumerate_addresses=lambda: host)
    assert chosen == [
        Interface("eth0", "192.168.1.20", 24),
        Interface("wlan0", "10.0.0.7", 16),
        Interface("tap0", "10.9.0.2", 24),
    ]


def test_unknown_flags_do_not_exclude_an_interface() -> None:
    """On systems where flags cannot be read, only names and addresses decide."""
    host = fake(HostAddress("en0", "192.168.1.5", 24), HostAddress("lo0", "127.0.0.1", 8))
    assert usable_interfaces(enumerate_addresses=lambda: host) == [
        Interface("en0", "192.168.1.5", 24)
    ]


def test_a_host_without_a_lan_falls_back_to_loopback() -> None:
    """With only loopback and bridges, nodes on this computer still meet on 127.0.0.1."""
    host = fake(LO, lan("docker0", "172.17.0.1", 16))
    assert usable_interfaces(enumerate_addresses=lambda: host) == [LOOPBACK]
    assert usable_interfaces(enumerate_addresses=lambda: []) == [LOOPBACK]


def test_requested_interfaces_are_used_exactly_in_order() -> None:
    """--interface picks exactly those addresses, even ones the default would skip."""
    host = fake(LO, ETH0, WLAN0, lan("docker0", "172.17.0.1", 16))
    chosen = usable_interfaces(
        ["10.0.0.7", "172.17.0.1", "10.0.0.7", "127.0.0.1"], enumerate_addresses=lambda: host
    )
    assert chosen == [
        Interface("wlan0", "10.0.0.7", 16),
        Interface("docker0", "172.17.0.1", 16),
        LOOPBACK,
    ]


def test_loopback_is_always_allowed_without_listing_the_host() -> None:
    """--interface 127.0.0.1 needs no enumeration (it is how tests stay off the network)."""

    def explode() -> list[HostAddress]:
        raise AssertionError("must not enumerate")

    assert usable_interfaces(["127.0.0.1"], enumerate_addresses=explode) == [
        Interface("lo", "127.0.0.1", 8)
    ]


def test_an_address_not_on_this_host_is_a_clear_error() -> None:
    """A typo in --interface says which addresses exist."""
    host = fake(LO, ETH0)
    with pytest.raises(ValueError, match=r"192\.168\.1\.99 is not an address of this host.*"
                                         r"192\.168\.1\.20"):
        usable_interfaces(["192.168.1.99"], enumerate_addresses=lambda: host)
    with pytest.raises(ValueError, match="not an IPv4 address"):
        usable_interfaces(["eth0"], enumerate_addresses=lambda: host)


def test_exclusion_reasons_are_named() -> None:
    """Doctor can say why an interface was not chosen."""
    assert excluded_reason(ETH0) is None
    assert excluded_reason(LO) == "loopback"
    assert excluded_reason(lan("eth0", "169.254.1.1", 16)) == "link-local"
    assert excluded_reason(lan("docker0", "172.17.0.1", 16)) == "container/VM bridge"
    assert excluded_reason(lan("eth0", "192.168.1.2", up=False)) == "down"
    assert excluded_reason(lan("wg0", "10.8.0.2", 32, multicast=False)) == "no multicast"


def test_interface_knows_its_subnet() -> None:
    assert Interface("eth0", "192.168.1.20", 24).network == ipaddress.IPv4Network(
        "192.168.1.0/24"
    )


def test_this_host_lists_its_loopback() -> None:
    """The real enumerator works here (it only reads the address list; nothing is sent)."""
    addrs = host_addresses()
    lo = [a for a in addrs if a.ip == "127.0.0.1"]
    assert lo, addrs
    assert lo[0].prefixlen == 8
    assert lo[0].loopback in (True, None)
    assert usable_interfaces(["127.0.0.1"]) == [LOOPBACK]
