"""mDNS discovery: lanchat nodes find each other, rename, leave, and ignore bad records.

Network safety: every socket here is opened on a thread that first joined a private network
namespace made for this module (only `lo` up, a 224.0.0.0/4 route on it), and zeroconf is
limited to 127.0.0.1 as well. Threads inherit the namespace of the thread that starts them,
so zeroconf's loop thread and sockets stay there. Without root or `ip`, the tests skip:
they never fall back to the real network.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest
from zeroconf import IPVersion, ServiceInfo, Zeroconf

from lab import skip_unless_required
from lanchat.discovery import mdns, mdns_records
from lanchat.discovery.mdns import MdnsService
from lanchat.discovery.mdns_records import SERVICE_TYPE
from lanchat.discovery.sighting import Sighting
from lanchat.nicks import placeholder
from waiting import wait_until

WAIT_S = 8.0  # generous: a probed registration shows up after ~1.1 s
THREAD_END_S = 3.0  # mDNS threads must all have ended this long after stop()
LO = "127.0.0.1"
_CLONE_NEWNET = 0x40000000

ALICE_ID = "a" * 52
BOB_ID = "b" * 52
CAROL_ID = "c" * 52
DAVE_ID = "d" * 52
EVE_ID = "e" * 52
MALLORY_ID = "m" * 52


# -- the private namespace -------------------------------------------------------------


def _netns_inode(path: str) -> int:
    return os.stat(path).st_ino


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture(scope="module")
def netns() -> Iterator[ThreadPoolExecutor]:
    """Worker threads that live in a fresh network namespace with only `lo` up."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        skip_unless_required("needs root and iproute2 for a private network namespace")
    name = f"lcm{os.getpid()}"
    try:
        _ip("netns", "add", name)
    except (subprocess.CalledProcessError, OSError) as exc:
        skip_unless_required(f"cannot create a network namespace: {exc}")
    try:
        _ip("-n", name, "link", "set", "lo", "up")
        _ip("-n", name, "route", "add", "224.0.0.0/4", "dev", "lo")
        root_inode = _netns_inode("/proc/self/ns/net")
        libc = ctypes.CDLL(None, use_errno=True)

        def enter() -> None:
            fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
            try:
                if libc.setns(fd, _CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns failed")
            finally:
                os.close(fd)
            if _netns_inode("/proc/thread-self/ns/net") == root_inode:
                raise RuntimeError("still in the root network namespace")

        with ThreadPoolExecutor(max_workers=8, initializer=enter) as pool:
            yield pool
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


def in_netns(pool: ThreadPoolExecutor, *calls: Callable[[], object]) -> None:
    """Run the calls concurrently on namespace threads and wait for all of them."""
    futures: list[Future[object]] = [pool.submit(call) for call in calls]
    for future in futures:
        future.result(timeout=WAIT_S)


# -- nodes that record what they see ----------------------------------------------------


@dataclass
class Watcher:
    """Collects one node's callbacks; tests wait on them with timeouts."""

    seen: list[Sighting] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def on_seen(self, sighting: Sighting) -> None:
        with self.changed:
            self.seen.append(sighting)
            self.changed.notify_all()

    def on_gone(self, node_id: str) -> None:
        with self.changed:
            self.gone.append(node_id)
            self.changed.notify_all()

    def wait_seen(self, match: Callable[[Sighting], bool]) -> Sighting:
        wait_until(lambda: any(map(match, self.seen)), "the sighting", WAIT_S,
                   cond=self.changed, state=lambda: f"seen: {self.seen}")
        with self.changed:
            return next(s for s in self.seen if match(s))

    def wait_until(self, check: Callable[[Watcher], bool], what: str) -> None:
        wait_until(lambda: check(self), what, WAIT_S, cond=self.changed,
                   state=lambda: str(self.latest()))

    def latest(self) -> dict[str, str]:
        """Instance name -> node id of the last sighting under that name."""
        return {s.instance: s.node_id for s in self.seen}

    def wait_gone(self, node_id: str) -> None:
        wait_until(lambda: node_id in self.gone, f"{node_id} gone", WAIT_S, cond=self.changed,
                   state=lambda: f"gone: {self.gone}")


@dataclass
class Node:
    service: MdnsService
    watcher: Watcher


@pytest.fixture
def make_node(netns: ThreadPoolExecutor) -> Iterator[Callable[..., Node]]:
    """Builds MdnsService nodes on 127.0.0.1; every one is stopped at test end."""
    nodes: list[Node] = []

    def make(node_id: str, nick: str, host: str = "h1", port: int = 4000) -> Node:
        watcher = Watcher()
        service = MdnsService(
            node_id=node_id,
            nick=nick,
            host=host,
            port=port,
            interfaces=[LO],
            on_seen=watcher.on_seen,
            on_gone=watcher.on_gone,
        )
        nodes.append(Node(service, watcher))
        return nodes[-1]

    yield make
    for node in nodes:
        node.service.stop()
    # stop() waits only briefly; a resolver caught mid-registration ends on its own soon after
    ours = [t for t in threading.enumerate() if t.name == "lanchat-mdns" or "zeroconf" in t.name]
    deadline = time.monotonic() + THREAD_END_S
    for thread in ours:
        thread.join(max(0.0, deadline - time.monotonic()))
    leaked = [t.name for t in ours if t.is_alive()]
    assert not leaked, f"threads left running: {leaked}"


def by_id(node_id: str) -> Callable[[Sighting], bool]:
    return lambda s: s.node_id == node_id


# -- stories ----------------------------------------------------------------------------


def test_alice_and_bob_see_each_other_with_their_details(
    netns: ThreadPoolExecutor, make_node: Callable[..., Node]
) -> None:
    """Two nodes start on one link and each reports the other's id, nick, host and port."""
    alice = make_node(ALICE_ID, "alice", host="h1", port=4001)
    bob = make_node(BOB_ID, "bob", host="h2", port=4002)
    in_netns(netns, alice.service.start, bob.service.start)

    seen_bob = alice.watcher.wait_seen(by_id(BOB_ID))
    assert seen_bob == Sighting(
        node_id=BOB_ID,
        nick="bob",
        host="h2",
        address=LO,
        port=4002,
        instance=f"bob@h2.{SERVICE_TYPE}",
        via="mdns",
        interface=LO,
    )
    seen_alice = bob.watcher.wait_seen(by_id(ALICE_ID))
    assert (seen_alice.nick, seen_alice.port) == ("alice", 4001)

    # each ignores its own announcement, and says so in doctor's numbers
    assert all(s.node_id != ALICE_ID for s in alice.watcher.seen)
    stats = alice.service.stats()
    assert stats["enabled"] is True and stats["error"] is None
    assert stats["registered"] == f"alice@h1.{SERVICE_TYPE}"
    assert stats["interfaces"] == [LO]
    assert stats["services"] == {f"bob@h2.{SERVICE_TYPE}": BOB_ID}
    assert stats["dropped"].get("own", 0) >= 1


def test_bob_leaving_is_reported_as_gone_at_once(
    netns: ThreadPoolExecutor, make_node: Callable[..., Node]
) -> None:
    """Bob stops: his goodbye reaches Alice, and stop() is quick and idempotent."""
    alice = make_node(ALICE_ID, "alice")
    bob = make_node(BOB_ID, "bob", host="h2")
    in_netns(netns, alice.service.start, bob.service.start)
    alice.watcher.wait_seen(by_id(BOB_ID))

    began = time.monotonic()
    bob.service.stop()
    assert time.monotonic() - began < 1.0
    bob.service.stop()  # a second stop does nothing
    alice.watcher.wait_gone(BOB_ID)
    assert alice.service.stats()["services_seen"] == 0
    assert bob.service.stats()["enabled"] is False


def test_alice_renaming_herself_shows_the_new_nick_without_leaving(
    netns: ThreadPoolExecutor, make_node: Callable[..., Node]
) -> None:
    """Alice becomes 'ally': Bob sees the new nick and never a departure."""
    alice = make_node(ALICE_ID, "alice")
    bob = make_node(BOB_ID, "bob", host="h2")
    in_netns(netns, alice.service.start, bob.service.start)
    bob.watcher.wait_seen(by_id(ALICE_ID))

    in_netns(netns, lambda: alice.service.set_nick("ally"))
    renamed = bob.watcher.wait_seen(lambda s: s.node_id == ALICE_ID and s.nick == "ally")
    assert renamed.instance == f"ally@h1.{SERVICE_TYPE}"
    assert alice.service.stats()["registered"] == f"ally@h1.{SERVICE_TYPE}"

    # the old name's goodbye is processed in order after the new name, so once Bob has
    # handled an event after it (Carol appearing), a wrong on_gone would already be there
    carol = make_node(CAROL_ID, "carol", host="h3")
    in_netns(netns, carol.service.start)
    bob.watcher.wait_seen(by_id(CAROL_ID))
    assert ALICE_ID not in bob.watcher.gone
    assert bob.service.stats()["services"] == {
        f"ally@h1.{SERVICE_TYPE}": ALICE_ID,
        f"carol@h3.{SERVICE_TYPE}": CAROL_ID,
    }


def test_two_alices_on_one_host_are_both_announced(
    netns: ThreadPoolExecutor, make_node: Callable[..., Node]
) -> None:
    """Two nodes named alice on host h1: one keeps the name, the other takes '-2'."""
    carol = make_node(CAROL_ID, "carol", host="h3")
    first = make_node(ALICE_ID, "alice", port=4001)
    second = make_node(DAVE_ID, "alice", port=4002)
    in_netns(netns, carol.service.start, first.service.start)
    # the probe may or may not catch the clash (see _check_conflict); either way the
    # lower node id keeps "alice@h1" and the other moves to "alice@h1-2"
    in_netns(netns, second.service.start)

    plain, suffixed = f"alice@h1.{SERVICE_TYPE}", f"alice@h1-2.{SERVICE_TYPE}"
    carol.watcher.wait_until(
        lambda w: w.latest().get(plain) == ALICE_ID and w.latest().get(suffixed) == DAVE_ID,
        "both alices under their own names",
    )
    one = [s for s in carol.watcher.seen if s.instance == plain][-1]
    two = [s for s in carol.watcher.seen if s.instance == suffixed][-1]
    assert (one.nick, one.host, one.port) == ("alice", "h1", 4001)
    assert (two.nick, two.host, two.port) == ("alice", "h1", 4002)
    assert first.service.stats()["registered"] == plain
    assert second.service.stats()["registered"] == suffixed


BAD_RECORDS: dict[str, tuple[Mapping[bytes, bytes | None], int]] = {
    "missing_id": ({b"v": b"1", b"nick": b"nobody"}, 4100),
    "bad_id": ({b"v": b"1", b"id": b"NOT-AN-ID", b"nick": b"x"}, 4101),
    "missing_nick": ({b"v": b"1", b"id": EVE_ID.encode()}, 4102),
    "txt_not_utf8": ({b"v": b"1", b"id": EVE_ID.encode(), b"nick": b"\xff\xfe"}, 4104),
    "bad_port": ({b"v": b"1", b"id": EVE_ID.encode(), b"nick": b"zero"}, 0),
    "txt_too_big": (
        {
            b"id": EVE_ID.encode(),
            b"nick": b"big",
            b"pad": b"x" * 250,
            **{f"k{i}".encode(): b"y" * 250 for i in range(5)},
        },
        4105,
    ),
    "bad_version": ({b"v": b"one", b"id": EVE_ID.encode(), b"nick": b"vv"}, 4106),
}


def test_carol_drops_and_counts_bad_records(
    netns: ThreadPoolExecutor, make_node: Callable[..., Node]
) -> None:
    """A hostile responder announces broken records: Carol counts each, reports none."""
    carol = make_node(CAROL_ID, "carol", host="h3")
    in_netns(netns, carol.service.start)

    def info(label: str, props: Mapping[bytes, bytes | None], port: int) -> ServiceInfo:
        return ServiceInfo(
            SERVICE_TYPE,
            f"{label}.{SERVICE_TYPE}",
            port=port,
            properties=dict(props),
            server="evil.local.",
            parsed_addresses=[LO],
        )

    records = [info(reason, props, port) for reason, (props, port) in BAD_RECORDS.items()]
    records.append(info("impostor", {b"v": b"1", b"id": CAROL_ID.encode(), b"nick": b"me"}, 4107))
    # A bad nick is not dropped: the peer is seen under a placeholder and its id.
    bad_nick = {b"v": b"1", b"id": MALLORY_ID.encode(), b"nick": "evil\x1b[2J\u3164".encode()}
    records.append(info("bad-nick", bad_nick, 4108))
    box: list[Zeroconf] = []
    in_netns(netns, lambda: box.append(Zeroconf(interfaces=[LO], ip_version=IPVersion.V4Only)))
    evil = box[0]
    try:
        in_netns(
            netns,
            *[lambda r=r: evil.register_service(r, cooperating_responders=True) for r in records],
        )
        # a good record announced after all the bad ones is handled after them, in order
        good = {b"v": b"1", b"id": EVE_ID.encode(), b"nick": b"eve"}
        in_netns(
            netns,
            lambda: evil.register_service(info("eve@h5", good, 4200), cooperating_responders=True),
        )
        carol.watcher.wait_seen(by_id(EVE_ID))
    finally:
        evil.close()

    assert [s.nick for s in carol.watcher.seen] == [placeholder(MALLORY_ID), "eve"]
    dropped = carol.service.stats()["dropped"]
    for reason in BAD_RECORDS:
        assert dropped.get(reason, 0) >= 1, (reason, dropped)
    assert dropped.get("own", 0) >= 2  # carol's own record and the impostor with her id


def test_mdns_stays_off_without_raising_when_port_5353_is_taken(
    netns: ThreadPoolExecutor, make_node: Callable[..., Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Avahi holds 5353 exclusively: start() logs, doctor shows why, the node goes on."""

    def taken(*args: object, **kwargs: object) -> Zeroconf:
        raise OSError(errno.EADDRINUSE, "Address already in use")

    monkeypatch.setattr(mdns, "Zeroconf", taken)
    alice = make_node(ALICE_ID, "alice")
    in_netns(netns, alice.service.start)
    alice.service.set_nick("ally")  # harmless while off
    stats = alice.service.stats()
    assert stats["enabled"] is False
    assert stats["registered"] is None
    assert "5353" in stats["error"]
    alice.service.stop()


def test_instance_label_is_one_safe_dns_label() -> None:
    """Dots, escape codes and long nicks never break the `<nick>@<host>` label."""
    assert mdns_records.instance_label("alice", "h1") == "alice@h1"
    assert mdns_records.instance_label("a.b\x1b[2J", "box.lan") == "a-b[2J@box-lan"
    long = mdns_records.instance_label("\U0001f600" * 64, "h1")
    assert len(long.encode()) <= mdns_records.INSTANCE_LABEL_MAX_BYTES
    long.encode().decode("utf-8")  # cut on a character boundary
    assert len(("nick=" + mdns_records.fit_txt("nick", "\U0001f600" * 64)).encode()) <= 255
