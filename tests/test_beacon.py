"""The multicast presence beacon, on loopback only.

Network safety: every test runs in a fresh network namespace of its own (only `lo`, up),
made with unshare(CLONE_NEWNET) for the test's thread and left again afterwards; the kernel
removes it when its sockets close. Without the privilege for that, the test runs in the
current namespace, where every socket still binds, joins and sends on 127.0.0.1 only with
TTL 1. Each test also uses a random 239.255.x.y group and a free port.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import json
import os
import random
import secrets
import socket
import struct
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lanchat.discovery import beacon as beacon_mod
from lanchat.discovery import beacon_peers
from lanchat.discovery.beacon import Beacon
from lanchat.discovery.beacon_peers import NEW_PEER_BURST, NEW_PEER_RATE_PER_S
from lanchat.discovery.beacon_wire import MAX_DATAGRAM
from lanchat.discovery.interfaces import Interface
from lanchat.discovery.sighting import Sighting
from lanchat.nicks import placeholder

LO = Interface("lo", "127.0.0.1", 8)
BOGUS = Interface("bogus", "198.51.100.123", 24)  # TEST-NET-2: on no host
WAIT_S = 3.0

_CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1


def _bring_lo_up() -> None:
    import fcntl

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH", b"lo", 0).ljust(40, b"\0")
        flags = struct.unpack_from("16sH", fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s.fileno(), _SIOCSIFFLAGS,
                    struct.pack("16sH", b"lo", flags | _IFF_UP).ljust(40, b"\0"))


@pytest.fixture(autouse=True)
def private_network() -> Iterator[bool]:
    """Move this thread into a new network namespace with only lo up, for one test."""
    if not sys.platform.startswith("linux"):
        yield False
        return
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    except OSError:
        yield False
        return
    if libc.unshare(_CLONE_NEWNET) != 0:
        os.close(home)
        yield False  # no privilege: stay here, on 127.0.0.1 only
        return
    try:
        _bring_lo_up()
        yield True
    finally:
        if libc.setns(home, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            pytest.exit(f"could not return to the original network namespace: {os.strerror(err)}")
        os.close(home)


@pytest.fixture
def where() -> tuple[str, int]:
    """A random administratively scoped group and a free UDP port."""
    group = f"239.255.{random.randint(1, 254)}.{random.randint(1, 254)}"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return group, port


def new_id() -> str:
    return base64.b32encode(secrets.token_bytes(32)).decode().lower().rstrip("=")


class Recorder:
    """Collects callbacks and lets a test wait for a condition on them."""

    def __init__(self) -> None:
        self.seen: list[Sighting] = []
        self.byes: list[tuple[str, str]] = []
        self._changed = asyncio.Event()

    def on_seen(self, sighting: Sighting) -> None:
        self.seen.append(sighting)
        self._changed.set()

    def on_bye(self, node_id: str, address: str) -> None:
        self.byes.append((node_id, address))
        self._changed.set()

    def ids(self) -> set[str]:
        return {s.node_id for s in self.seen}

    async def wait_for(self, condition: Callable[[], bool], limit_s: float = WAIT_S) -> None:
        async with asyncio.timeout(limit_s):
            while not condition():
                self._changed.clear()
                await self._changed.wait()


def make_beacon(where: tuple[str, int], nick: str, rec: Recorder, *,
                interfaces: list[Interface] | None = None, port: int = 47000) -> Beacon:
    group, beacon_port = where
    return Beacon(node_id=new_id(), nick=nick, host=f"{nick}-pc", port=port,
                  interfaces=interfaces if interfaces is not None else [LO],
                  on_seen=rec.on_seen, on_bye=rec.on_bye, group=group, beacon_port=beacon_port)


def raw_sender(source_ip: str = "127.0.0.2") -> socket.socket:
    """A plain socket that multicasts on lo only, from `source_ip` (any 127/8 address)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
    s.bind((source_ip, 0))
    return s


def raw_listener(where: tuple[str, int]) -> socket.socket:
    """A plain socket that hears the group on lo, like one more node on this host."""
    group, port = where
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.setsockopt(socket.IPPROTO_IP, getattr(socket, "IP_MULTICAST_ALL", 49), 0)
    s.bind((group, port))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                 socket.inet_aton(group) + socket.inet_aton("127.0.0.1"))
    s.setblocking(False)
    return s


def datagram(**overrides: Any) -> bytes:
    msg: dict[str, Any] = {"v": 1, "t": "hello", "id": new_id(), "nick": "mallory",
                           "host": "mpc", "port": 4000, "inst": secrets.token_hex(8), "seq": 1}
    msg.update(overrides)
    return json.dumps(msg).encode()


def test_two_nodes_on_one_host_see_each_other(where: tuple[str, int]) -> None:
    """Alice and Bob start on the same computer and each sees the other with its details."""

    async def story() -> None:
        ra, rb = Recorder(), Recorder()
        alice = make_beacon(where, "alice", ra, port=5001)
        bob = make_beacon(where, "bob", rb, port=5002)
        await alice.start()
        await bob.start()
        try:
            await ra.wait_for(lambda: bob.node_id in ra.ids())
            await rb.wait_for(lambda: alice.node_id in rb.ids())
            assert [s for s in ra.seen if s.node_id == bob.node_id][0] == Sighting(
                node_id=bob.node_id, nick="bob", host="bob-pc", address="127.0.0.1", port=5002,
                instance=bob.instance, via="beacon", interface="127.0.0.1")
            assert {s.port for s in rb.seen} == {5001}
            assert alice.node_id not in ra.ids()  # our own echo is not a peer

            stats = alice.stats()
            lo = stats["interfaces"]["127.0.0.1"]
            assert lo["joined"] and lo["error"] is None and lo["sent"] >= 1
            assert lo["received"] >= 1 and lo["accepted"] >= 1
            assert stats["dropped"]["own"] >= 1
            # safety: the socket multicasts on loopback only, with TTL 1
            sock = alice._sockets.links[0].sock
            assert sock is not None
            assert sock.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL) == 1
            ifaddr = sock.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, 4)
            assert socket.inet_ntoa(ifaddr) == "127.0.0.1"
        finally:
            await alice.stop()
            await bob.stop()

    asyncio.run(story())


def test_start_burst_is_three_hellos_and_a_new_peer_is_answered_at_once(
    where: tuple[str, int],
) -> None:
    """Alice's start says hello three times; a newcomer's hello gets an answer well before
    her next heartbeat."""

    async def story() -> None:
        loop = asyncio.get_running_loop()
        listener = raw_listener(where)
        ra = Recorder()
        alice = make_beacon(where, "alice", ra)
        await alice.start()
        try:
            hellos: list[dict[str, Any]] = []
            async with asyncio.timeout(WAIT_S):
                while len(hellos) < 3:
                    data, _ = await loop.sock_recvfrom(listener, 4096)
                    hellos.append(json.loads(data))
            assert [h["t"] for h in hellos] == ["hello"] * 3
            assert [h["seq"] for h in hellos] == [1, 2, 3]
            assert hellos[0] == {"v": 1, "t": "hello", "id": alice.node_id, "nick": "alice",
                                 "host": "alice-pc", "port": 47000, "inst": alice.instance,
                                 "seq": 1}

            # Carol starts: her hello reaches Alice, who answers without waiting for a beat
            carol = new_id()
            with raw_sender() as s:
                s.sendto(datagram(id=carol, nick="carol"), where)
                sent_at = loop.time()
                async with asyncio.timeout(beacon_mod.BEACON_INTERVAL_S * 0.5):
                    while True:
                        data, _ = await loop.sock_recvfrom(listener, 4096)
                        msg = json.loads(data)
                        if msg["id"] == alice.node_id:
                            break
            assert msg["t"] == "hb" and msg["seq"] == 4
            assert loop.time() - sent_at < beacon_mod.BEACON_INTERVAL_S * 0.5
            assert carol in ra.ids()
        finally:
            await alice.stop()
            listener.close()

    asyncio.run(story())


def test_bye_tells_peers_the_node_left_once(where: tuple[str, int]) -> None:
    """Bob quits: Alice hears his bye (sent twice) and reports it once."""

    async def story() -> None:
        ra, rb = Recorder(), Recorder()
        alice = make_beacon(where, "alice", ra)
        bob = make_beacon(where, "bob", rb)
        await alice.start()
        await bob.start()
        try:
            await ra.wait_for(lambda: bob.node_id in ra.ids())
            await bob.stop()
            await bob.stop()  # idempotent
            assert not bob.stats()["running"]
            await ra.wait_for(lambda: bool(ra.byes))
            # a later datagram on the same path proves both byes were processed
            sentinel = new_id()
            with raw_sender("127.0.0.1") as s:
                s.sendto(datagram(id=sentinel), where)
            await ra.wait_for(lambda: sentinel in ra.ids())
            assert ra.byes == [(bob.node_id, "127.0.0.1")]
        finally:
            await alice.stop()
            await bob.stop()

    asyncio.run(story())


def test_a_new_nick_reaches_peers_at_once(where: tuple[str, int]) -> None:
    """Bob renames himself; Alice sees the new nick before his next heartbeat."""

    async def story() -> None:
        ra, rb = Recorder(), Recorder()
        alice = make_beacon(where, "alice", ra)
        bob = make_beacon(where, "bob", rb)
        await alice.start()
        await bob.start()
        try:
            await ra.wait_for(lambda: bob.node_id in ra.ids())
            limit = beacon_mod.BEACON_INTERVAL_S * (1 - beacon_mod.BEACON_JITTER) * 0.8
            bob.set_nick("bobby")
            await ra.wait_for(lambda: ra.seen[-1].nick == "bobby", limit_s=limit)
            await asyncio.to_thread(bob.set_nick, "robert")  # from another thread
            await ra.wait_for(lambda: ra.seen[-1].nick == "robert", limit_s=limit)
            with pytest.raises(ValueError):
                bob.set_nick("\x1b[2Jevil")
            with pytest.raises(ValueError):
                bob.set_nick("x" * 65)
        finally:
            await alice.stop()
            await bob.stop()

    asyncio.run(story())


def test_bad_datagrams_are_dropped_counted_and_never_reported(where: tuple[str, int]) -> None:
    """Garbage, oversize, forged, replayed and own beacons change nothing and are counted."""

    async def story() -> None:
        ra = Recorder()
        alice = make_beacon(where, "alice", ra)
        await alice.start()
        try:
            x = new_id()
            x_inst = secrets.token_hex(8)
            bad = {
                "oversize": [datagram(nick="n", pad="p" * MAX_DATAGRAM), b"{" * 5000],
                "not_json": [b"\xff\xfe\x00garbage", b"hello", b"", b"[" * 1000],
                "malformed": [b"[1,2]", b'"x"', datagram(t="hi"), datagram(seq=-1),
                              datagram(nick=None), datagram(nick="n" * 300),
                              datagram(seq="7"), datagram(v="1"), datagram(inst=5),
                              json.dumps({"v": 1, "t": "hb"}).encode()],
                "bad_version": [datagram(v=2), datagram(v=0)],
                "bad_id": [datagram(id="ALICE"), datagram(id=new_id()[:-1]),
                           datagram(inst="a b")],
                "bad_host": [datagram(host="h\nx"), datagram(host="h" * 254)],
                "bad_port": [datagram(port=0), datagram(port=70000), datagram(port="80"),
                             datagram(port=True), datagram(port=-1)],
                "own": [datagram(id=alice.node_id, inst=alice.instance, seq=10**6)],
                "id_clash": [datagram(id=alice.node_id)],
            }
            # Bad nicks are not dropped: the peer is heard under a placeholder and its id.
            bad_nicks = {new_id(): n for n in ("\x1b[2J\x1b]0;pwned\x07", "x" * 65, "",
                                                "bob\u202eevil", "ali\u200bce", "\u3164")}
            with raw_sender("127.0.0.2") as s:
                for dgrams in bad.values():
                    for d in dgrams:
                        s.sendto(d, where)
                for node_id, nick in bad_nicks.items():
                    s.sendto(datagram(id=node_id, nick=nick), where)
                s.sendto(datagram(id=x, inst=x_inst, seq=5, nick="xavier"), where)
                s.sendto(datagram(id=x, inst=x_inst, seq=5, nick="replayed"), where)
                s.sendto(datagram(id=x, inst=x_inst, seq=3, nick="older"), where)
                s.sendto(datagram(id=x, inst=x_inst, seq=6, t="bye"), where)
                s.sendto(datagram(id=x, inst=x_inst, seq=6, t="bye"), where)
                sentinel = new_id()
                s.sendto(datagram(id=sentinel), where)
            await ra.wait_for(lambda: sentinel in ra.ids())

            assert [(sg.node_id, sg.nick) for sg in ra.seen] == [
                *((i, placeholder(i)) for i in bad_nicks), (x, "xavier"), (sentinel, "mallory")]
            assert ra.byes == [(x, "127.0.0.2")]
            dropped = alice.stats()["dropped"]
            for reason, dgrams in bad.items():
                if reason == "own":
                    assert dropped[reason] >= len(dgrams)  # plus alice's own echoes
                else:
                    assert dropped[reason] == len(dgrams), reason
            assert dropped["replay"] == 3
            assert dropped["rate_limited"] == 0 and dropped["off_link"] == 0
        finally:
            await alice.stop()

    asyncio.run(story())


async def send_until_heard(rec: Recorder, where: tuple[str, int], source_ip: str) -> str:
    """Send a fresh peer's beacon until `rec` hears it: everything sent before it on this
    host has then been read (or dropped by a full socket buffer, which a flood may cause)."""
    sentinel, inst = new_id(), secrets.token_hex(8)
    with raw_sender(source_ip) as s:
        for seq in range(1, 30):
            s.sendto(datagram(id=sentinel, inst=inst, seq=seq), where)
            with contextlib.suppress(TimeoutError):
                await rec.wait_for(lambda: sentinel in rec.ids(), limit_s=0.1)
                return sentinel
    raise AssertionError("the sentinel beacon was never heard")


def _flood(sock: socket.socket, where: tuple[str, int], count: int) -> None:
    """`count` hellos with fresh ids, ~5,000/s: a thousand times the new-peer rate, yet
    paced so that the receiver reads them rather than its socket buffer dropping them (one
    socket takes every interface's beacons), which would leave the limiter nothing to do."""
    for i in range(count):
        sock.sendto(datagram(), where)
        if i % 50 == 49:
            time.sleep(0.01)  # pacing the sender, not waiting for a condition


def test_a_flood_of_random_ids_is_rate_limited_and_bob_is_still_heard(
    where: tuple[str, int],
) -> None:
    """5,000 hellos with random ids from one source: most are refused, the table stays
    small, and Alice keeps hearing Bob."""

    async def story() -> None:
        ra, rb = Recorder(), Recorder()
        alice = make_beacon(where, "alice", ra)
        bob = make_beacon(where, "bob", rb)
        await alice.start()
        await bob.start()
        try:
            await ra.wait_for(lambda: bob.node_id in ra.ids())
            loop = asyncio.get_running_loop()
            started = loop.time()
            with raw_sender("127.0.0.9") as flooder:
                await asyncio.to_thread(_flood, flooder, where, 5000)
            await send_until_heard(ra, where, "127.0.0.10")
            elapsed = loop.time() - started

            from_flood = [sg for sg in ra.seen if sg.address == "127.0.0.9"]
            allowed = NEW_PEER_BURST + NEW_PEER_RATE_PER_S * (elapsed + 0.5)
            assert len(from_flood) <= allowed
            stats = alice.stats()
            assert stats["dropped"]["rate_limited"] >= 1000
            assert stats["tracked"] <= allowed + 10

            # Bob is still heard after the flood
            heard = len([sg for sg in ra.seen if sg.node_id == bob.node_id])
            await ra.wait_for(
                lambda: len([sg for sg in ra.seen if sg.node_id == bob.node_id]) > heard)
        finally:
            await alice.stop()
            await bob.stop()

    asyncio.run(story())


def test_the_peer_table_and_source_table_stay_bounded(
    where: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even with no rate limit, endless new ids and sources evict the oldest entries."""
    monkeypatch.setattr(beacon_peers, "MAX_TRACKED", 100)
    monkeypatch.setattr(beacon_peers, "MAX_SOURCES", 8)
    monkeypatch.setattr(beacon_peers, "SOURCE_RATE_PER_S", 1e9)
    monkeypatch.setattr(beacon_peers, "SOURCE_BURST", 1e9)
    monkeypatch.setattr(beacon_peers, "NEW_PEER_RATE_PER_S", 1e9)
    monkeypatch.setattr(beacon_peers, "NEW_PEER_BURST", 1e9)

    async def story() -> None:
        ra = Recorder()
        alice = make_beacon(where, "alice", ra)
        await alice.start()
        try:
            for n in range(20):
                with raw_sender(f"127.0.1.{n + 1}") as s:
                    await asyncio.to_thread(_flood, s, where, 50)
            await send_until_heard(ra, where, "127.0.0.10")
            stats = alice.stats()
            assert stats["accepted"] > 150  # a full socket buffer may lose some of the 1,000
            assert stats["tracked"] == 100
            assert stats["evicted"] > 0
            assert stats["evicted"] + stats["tracked"] <= stats["accepted"]
            assert stats["sources"] <= 8
        finally:
            await alice.stop()

    asyncio.run(story())


def test_an_unusable_interface_is_skipped_and_reported(where: tuple[str, int]) -> None:
    """Alice lists an address that is on no interface here: it is skipped, doctor says
    why, and loopback still works."""

    async def story() -> None:
        ra, rb = Recorder(), Recorder()
        alice = make_beacon(where, "alice", ra, interfaces=[BOGUS, LO])
        bob = make_beacon(where, "bob", rb)
        await alice.start()
        await bob.start()
        try:
            await ra.wait_for(lambda: bob.node_id in ra.ids())
            await rb.wait_for(lambda: alice.node_id in rb.ids())
            assert {s.interface for s in ra.seen} == {"127.0.0.1"}
            ifs = alice.stats()["interfaces"]
            assert ifs[BOGUS.ip]["joined"] is False
            assert "failed" in ifs[BOGUS.ip]["error"]
            assert ifs[BOGUS.ip]["sent"] == 0
            assert ifs[LO.ip]["joined"] is True and ifs[LO.ip]["error"] is None
        finally:
            await alice.stop()
            await bob.stop()

    asyncio.run(story())


def test_a_beacon_with_no_usable_interface_keeps_running(where: tuple[str, int]) -> None:
    """Every interface fails: start and stop still work, and stats say why."""

    async def story() -> None:
        alice = make_beacon(where, "alice", Recorder(), interfaces=[BOGUS])
        await alice.start()
        stats = alice.stats()
        assert stats["running"]
        assert stats["interfaces"][BOGUS.ip]["error"]
        await alice.stop()
        assert not alice.stats()["running"]

    asyncio.run(story())


def test_bad_arguments_are_refused() -> None:
    """A node cannot announce an invalid nick, id or port."""
    args: dict[str, Any] = dict(node_id=new_id(), nick="ok", host="h", port=1,
                                interfaces=[LO], on_seen=lambda s: None,
                                on_bye=lambda i, a: None)
    for bad in ({"nick": ""}, {"nick": "a\x07"}, {"node_id": "short"}, {"port": 0},
                {"group": "10.0.0.1"}, {"host": "h" * 300}):
        with pytest.raises(ValueError):
            Beacon(**{**args, **bad})
