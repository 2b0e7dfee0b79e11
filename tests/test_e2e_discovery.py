"""Peers appear by themselves: beacon and mDNS presence between real processes in the lab."""

from __future__ import annotations

import json
import shutil
import signal
import sys
from typing import Any

import pytest

from lab import Lab, LanchatProc, skip_unless_required


def needs_netns(lab: Lab) -> None:
    """Raw packets are only ever sent inside the namespace lab, never from the root one."""
    if lab.mode != "netns":
        skip_unless_required("sends raw multicast: needs the namespace lab")


def start_all(lab: Lab, *args: str) -> list[LanchatProc]:
    """One node per host, named after the host."""
    procs = [h.start_node(*args, nick=f"n{i}") for i, h in enumerate(lab.hosts, 1)]
    for proc in procs:
        proc.wait_event("ready")
    return procs


def joined_nicks(proc: LanchatProc, count: int, timeout: float = 10.0) -> set[str]:
    """Nicks of the first `count` peers `proc` saw join."""
    return {e["peer"]["nick"] for e in proc.wait_count("peer_joined", count, timeout)}


@pytest.mark.parametrize("sources", [(), ("--no-mdns",), ("--no-beacon",)],
                         ids=["both", "beacon-only", "mdns-only"])
def test_four_hosts_all_see_all(lab_factory: Any, sources: tuple[str, ...]) -> None:
    """Everyone on the segment is listed by everyone else, with either source alone."""
    lab = lab_factory(4)
    procs = start_all(lab, *sources)
    for i, proc in enumerate(procs, 1):
        others = {f"n{j}" for j in range(1, 5) if j != i}
        assert joined_nicks(proc, 3) == others
    via = procs[0].events_named("peer_joined")[0]["peer"]["via"]
    assert via == (["mdns"] if sources == ("--no-beacon",) else ["beacon"])


def test_two_nodes_on_one_computer_see_each_other(lab_factory: Any) -> None:
    """Two lanchat processes in one namespace find each other (shared beacon port)."""
    lab = lab_factory(1)
    host = lab.hosts[0]
    alice = host.start_node(nick="alice")
    bob = host.start_node(nick="bob")
    assert alice.wait_event("peer_joined")["peer"]["nick"] == "bob"
    assert bob.wait_event("peer_joined")["peer"]["nick"] == "alice"
    alice.command("/msg bob same machine")
    bob.wait_event("message", text="same machine")


def test_leaving_is_seen_as_bye_and_crashes_as_timeout(lab_factory: Any) -> None:
    """A clean exit is 'bye'; SIGKILL and a pulled cable are 'timeout'."""
    lab = lab_factory(4)
    watcher, quitter, crasher, unplugged = start_all(lab)
    joined_nicks(watcher, 3)
    quitter.stop()
    assert watcher.wait_event("peer_left", peer={"nick": "n2"})["reason"] == "bye"
    crasher.kill(signal.SIGKILL)
    assert watcher.wait_event("peer_left", peer={"nick": "n3"}, timeout=10)["reason"] == "timeout"
    lab.link_down(lab.hosts[3])
    assert watcher.wait_event("peer_left", peer={"nick": "n4"}, timeout=10)["reason"] == "timeout"


def test_quitting_while_still_announcing_says_bye_and_exits_on_quit(lab2: Lab) -> None:
    """/quit in the first second, while mDNS and the Bonjour presence still probe: the peer
    hears bye and the process ends by itself. (The presence's probe once held the close
    past its deadline: the peer saw 'error' and the process needed SIGTERM.)"""
    alice, bob = start_all(lab2)
    alice.wait_event("peer_joined", peer={"nick": "n2"})
    bob.wait_event("peer_joined", peer={"nick": "n1"})
    assert bob.stop() == 0
    assert bob.signals == [], "/quit alone ended it, within stop()'s patience"
    assert alice.wait_event("peer_left", peer={"nick": "n2"})["reason"] == "bye"


def test_restarted_node_comes_back_as_the_same_peer(lab2: Lab) -> None:
    """Same home, same id: the restarted node keeps its list number."""
    alice, bob = start_all(lab2)
    first = alice.wait_event("peer_joined")["peer"]
    bob.kill(signal.SIGKILL)
    alice.wait_event("peer_left", timeout=10)
    bob = bob.restart()
    again = alice.wait_event("peer_joined", timeout=10)["peer"]
    assert (again["id"], again["number"]) == (first["id"], first["number"])
    alice.command("/list")
    assert len(alice.wait_event("output", command="/list")["data"]) == 1


FORGE = """
import json, socket, sys, time
node_id, port, count, ifaddr = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(ifaddr))
for seq in range(count):
    d = {"v": 1, "t": "hello", "id": node_id, "nick": "bob", "host": "evil", "port": port,
         "inst": "f0f0f0f0f0f0f0f0", "seq": 10**9 + seq}
    s.sendto(json.dumps(d).encode(), ("239.255.77.77", 47812))
    time.sleep(0.05)
print("forged")
"""


def test_forged_beacon_does_not_redirect_traffic(lab3: Lab) -> None:
    """Mallory announces bob's id at her address: messages still reach the real bob."""
    needs_netns(lab3)
    alice, bob, mallory = start_all(lab3, "--no-mdns")
    bob_id = bob.events_named("ready")[0]["id"]
    alice.wait_event("peer_joined", peer={"nick": "n2"})
    trap = lab3.hosts[2].popen([sys.executable, "-c", "import socket,time;"
                                "s=socket.socket();s.setsockopt(socket.SOL_SOCKET,"
                                "socket.SO_REUSEADDR,1);s.bind(('',47900));s.listen();"
                                "time.sleep(60)"])
    forged = lab3.hosts[2].run([sys.executable, "-c", FORGE, bob_id, "47900", "20",
                                lab3.hosts[2].ip])
    assert "forged" in forged.stdout
    alice.command("/msg n2 is it really you")
    got = bob.wait_event("message", text="is it really you", timeout=15)
    assert got["from"]["nick"] == "n1"
    alice.command("/whois n2")
    who = alice.wait_event("output", command="/whois n2")["data"]
    assert who["nick"] == "n2"
    assert who["addresses"][0] == lab3.hosts[1].ip
    trap.kill()


def test_unusable_interfaces_do_not_stop_discovery(lab3: Lab) -> None:
    """A host with a peerless interface and one that refuses multicast still finds all."""
    host = lab3.hosts[0]
    host.add_dummy_interface("lonely0", "10.99.1.1/24")
    host.add_dummy_interface("nomcast0", "10.99.2.1/24")
    host.run(["ip", "link", "set", "nomcast0", "multicast", "off"], check=True)
    procs = start_all(lab3)
    assert joined_nicks(procs[0], 2) == {"n2", "n3"}
    assert "n1" in joined_nicks(procs[1], 2)
    procs[0].command("/doctor")
    report = procs[0].wait_event("output", command="/doctor")["data"]
    names = {i["name"] for i in report["interfaces"]}
    assert "eth0" in names and "nomcast0" not in names


def test_host_on_two_segments_is_one_peer(lab_factory: Any) -> None:
    """A multi-homed host is heard on both segments, known at both its addresses (by the
    beacon alone too), and listed once."""
    lab = lab_factory(3)
    seg = lab.add_segment()
    lab.hosts[0].add_interface(seg)
    lab.hosts[1].add_interface(seg)
    lab.link_down(lab.hosts[2])
    alice, bob, _ = start_all(lab, "--no-mdns")
    bob_peer = alice.wait_event("peer_joined", peer={"nick": "n2"})["peer"]
    both = {i.ip for i in lab.hosts[1].interfaces.values()}
    alice.wait_event(None, pred=lambda e: e["event"] in ("peer_joined", "peer_updated")
                     and e["peer"]["id"] == bob_peer["id"]
                     and set(e["peer"]["addresses"]) == both, consume=False)
    alice.command("/list")
    listing = alice.wait_event("output", command="/list")["data"]
    assert [p["id"] for p in listing].count(bob_peer["id"]) == 1
    alice.command("/doctor")
    report = alice.wait_event("output", command="/doctor")["data"]
    heard = next(p for p in report["peers"] if p["id"] == bob_peer["id"])
    assert len(heard["heard_on"]) >= 1
    alice.command("/msg n2 over either cable")
    bob.wait_event("message", text="over either cable")


def test_lanchat_peers_lists_the_segment(lab3: Lab) -> None:
    """`lanchat peers --json` discovers for a moment and prints who is here."""
    start_all(lab3)
    host = lab3.hosts[0]
    out = host.run([*host.lanchat("--home", str(lab3.base_dir / "cli")),
                    "--nick", "cli", "--port", "0", "peers", "--wait", "1.5", "--json"],
                   check=True)
    nicks = {p["nick"] for p in json.loads(out.stdout)["peers"]}
    assert {"n2", "n3"} <= nicks


def test_an_independent_mdns_client_sees_the_txt_keys(lab2: Lab) -> None:
    """`dig` (BIND's resolver, not python-zeroconf) queries lanchat's records over mDNS."""
    needs_netns(lab2)  # on one loopback, dig would reach whichever responder holds 5353
    dig = shutil.which("dig")
    if dig is None:
        skip_unless_required("dig is not installed (Debian package bind9-dnsutils)")
    alice, _ = start_all(lab2, "--no-beacon")
    alice_id = alice.events_named("ready")[0]["id"]
    alice.wait_event("peer_joined", timeout=10)
    # dig asks alice's responder directly (legacy unicast, RFC 6762 s6.7); BIND's flags
    # for recursion and authenticated data are off, as an mDNS querier's are.
    out = lab2.hosts[1].run([dig, "+time=2", "+tries=3", "+noedns", "+nocookie", "+norecurse",
                             "+noadflag", "-p", "5353", f"@{lab2.hosts[0].ip}",
                             "_lanchat._tcp.local", "PTR"]).stdout
    assert "IN\tPTR\tn1\\@" in out or "PTR\tn1\\@" in out, out
    assert f'"id={alice_id}"' in out and '"nick=n1"' in out and '"v=1"' in out, out


MDNS_ABUSE = r"""
import socket, struct, sys
target, ifaddr = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(ifaddr))
def send(pkt):
    for dst in ("224.0.0.251", target):
        s.sendto(pkt, (dst, 5353))
header = struct.pack(">HHHHHH", 0, 0x8400, 0, 1, 0, 0)
rr_tail = struct.pack(">HHIH", 1, 1, 120, 4) + bytes([10, 0, 0, 9])
send(header + b"\xc0\x0c" + rr_tail)                                # pointer to itself
chain = b"".join(struct.pack(">H", 0xC000 | (12 + 2 * i - 2)) for i in range(1, 1500))
send(header + b"\x01a\x00" + chain + rr_tail)                         # 1,500 chained pointers
send(b"\xff" * 9500)                                                  # larger than any packet
txt = b"\x0bn1@vm-evil\x08_lanchat\x04_tcp\x05local\x00"
send(header + txt + struct.pack(">HHIH", 16, 1, 120, 2000) + b"\xff" * 2000)  # huge TXT
for i in range(3000):                                                 # alternating A flood
    name = b"\x04host\x05local\x00"
    addr = bytes([10, 0, (i % 2), 1])
    send(header + name + struct.pack(">HHIH", 1, 0x8001, 120, 4) + addr)
print("abused")
"""


def test_malformed_mdns_packets_leave_discovery_working(lab3: Lab) -> None:
    """Pointer loops, oversize packets, a huge TXT and an A/B flood: alice keeps going."""
    needs_netns(lab3)
    alice = lab3.hosts[0].start_node("--no-beacon", nick="alice")
    alice.wait_event("ready")
    out = lab3.hosts[1].run([sys.executable, "-c", MDNS_ABUSE, lab3.hosts[0].ip,
                             lab3.hosts[1].ip], check=True)
    assert "abused" in out.stdout
    bob = lab3.hosts[2].start_node("--no-beacon", nick="bob")
    assert alice.wait_event("peer_joined", timeout=15)["peer"]["nick"] == "bob"
    alice.command("/msg bob still standing")
    bob.wait_event("message", text="still standing")
    assert alice.alive


def test_doctor_says_why_nobody_is_found(lab2: Lab) -> None:
    """Alone on the segment, `lanchat doctor` shows what went out and hints at the causes."""
    needs_netns(lab2)
    host = lab2.hosts[0]
    cli = [*host.lanchat("--home", str(lab2.base_dir / "doc")), "--nick",
           "doc", "--port", "0"]
    out = host.run([*cli, "doctor", "--wait", "2", "--json"], check=True)
    report = json.loads(out.stdout)
    eth0 = next(i for i in report["interfaces"] if i["name"] == "eth0")
    assert eth0["multicast_joined"] is True and eth0["beacons_sent"] >= 2
    assert eth0["tcp_port_reachable"] is True
    assert any("nothing is heard" in h for h in report["hints"])
    text = host.run([*cli, "--no-mdns", "--no-beacon", "doctor", "--wait", "0"], check=True)
    assert "only --peer addresses are used" in text.stdout
