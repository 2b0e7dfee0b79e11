"""Self-tests of the namespace lab (they do not need lanchat itself)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from lab import Host, Lab, LabError, lab_namespaces, skip_unless_required

pytestmark = pytest.mark.lab

GROUP = "239.255.77.77"

RECEIVER = textwrap.dedent("""
    import socket, struct, sys
    group, port, ifaddr = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("", port))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                 socket.inet_aton(group) + socket.inet_aton(ifaddr))
    s.settimeout(5)
    print("ready", flush=True)
    for _ in range(int(sys.argv[4])):
        data, src = s.recvfrom(2048)
        print(data.decode(), src[0], flush=True)
""")

SENDER = textwrap.dedent("""
    import socket, sys
    group, port, ifaddr, text = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
    if ifaddr:  # else the kernel picks the interface from the 224.0.0.0/4 route
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(ifaddr))
    s.sendto(text.encode(), (group, port))
""")

# a stand-in for `lanchat ... run --json`, to exercise LanchatProc without lanchat
FAKE_NODE = textwrap.dedent("""
    import json, os, sys, time
    args = sys.argv[1:]
    def opt(name):
        return args[args.index(name) + 1] if name in args else None
    def emit(event, **kw):
        print(json.dumps({"event": event, "ts": time.time(), **kw}), flush=True)
    print("starting (not json)", flush=True)
    print("fake node stderr line", file=sys.stderr, flush=True)
    emit("ready", id="fake", nick=opt("--nick"), port=int(opt("--port")),
         addresses=[opt("--interface")], pid=os.getpid(), args=args)
    for line in sys.stdin:
        line = line.rstrip("\\n")
        if line == "/quit":
            emit("output", command="/quit", text="bye", data=None)
            break
        if line == "/ignore-quit":
            emit("output", command=line, text="", data=None)
            import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN)
            sys.stdin.close()
            time.sleep(60)
        emit("message", id=line, **{"from": {"id": "x", "nick": "echo"}}, to="direct",
             text=line)
""")


@pytest.fixture
def fake_node(tmp_path: Path) -> list[str]:
    path = tmp_path / "fake_node.py"
    path.write_text(FAKE_NODE)
    return [sys.executable, str(path)]


def _poll(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s: {what}")


def _needs_netns(lab: Lab) -> None:
    if lab.mode != "netns":
        skip_unless_required(f"network namespaces unavailable: {lab.fallback_reason}")


def _root_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return {line.split(":")[1].strip() for line in out.splitlines()}


def test_topology(lab_factory: Callable[..., Lab]) -> None:
    before = _root_links()
    lab = lab_factory(3)
    _needs_netns(lab)
    assert _root_links() == before  # nothing but namespaces is created in the root namespace
    assert len({h.ip for h in lab}) == 3
    assert all(h.ns and h.ns.startswith(lab.prefix) for h in lab)
    for h in lab:
        out = h.run(["ip", "-o", "-4", "addr", "show", "dev", "eth0"], check=True).stdout
        assert f"{h.ip}/24" in out
        routes = h.run(["ip", "route", "show", "224.0.0.0/4"], check=True).stdout
        assert "dev eth0" in routes
    bridge_ports = lab.hosts[0].run(["true"])  # smoke: run works
    assert bridge_ports.returncode == 0
    assert set(lab_namespaces()) >= {lab.switch_ns, *(h.ns for h in lab)}


def test_hosts_reach_each_other(lab3: Lab) -> None:
    _needs_netns(lab3)
    for a in lab3:
        for b in lab3:
            if a is not b:
                assert a.reachable(b.ip), f"{a.name} cannot reach {b.name} ({b.ip})"


def test_multicast_crosses_the_bridge(lab3: Lab) -> None:
    _needs_netns(lab3)
    h1, h2, h3 = lab3.hosts
    port = 47877
    receivers = [h.popen([sys.executable, "-c", RECEIVER, GROUP, str(port), h.ip, "2"],
                         stdout=-1, stderr=-1) for h in (h2, h3)]
    for r in receivers:
        assert r.stdout is not None
        assert r.stdout.readline().strip() == "ready"
    h1.python(SENDER, GROUP, str(port), h1.ip, "via-if", check=True)
    h1.python(SENDER, GROUP, str(port), "", "via-route", check=True)
    for r in receivers:
        out, err = r.communicate(timeout=10)
        assert r.returncode == 0, err
        assert out.splitlines() == [f"via-if {h1.ip}", f"via-route {h1.ip}"]


def test_link_down_partitions_and_link_up_heals(lab3: Lab) -> None:
    _needs_netns(lab3)
    h1, h2, h3 = lab3.hosts
    assert h1.reachable(h2.ip)
    lab3.link_down(h2)
    assert "NO-CARRIER" in h2.run(["ip", "link", "show", "eth0"]).stdout
    assert not h1.reachable(h2.ip, timeout=0.5)
    assert h1.reachable(h3.ip)  # the rest of the segment is unaffected
    lab3.link_up(h2)
    _poll(lambda: h1.reachable(h2.ip, timeout=0.5), 5.0, "h2 reachable after link_up")


def test_namespaces_removed_after_exit(tmp_path: Path) -> None:
    with Lab(2, base_dir=tmp_path) as lab:
        _needs_netns(lab)
        names = {lab.switch_ns, *(h.ns for h in lab)}
        assert names <= set(lab_namespaces())
        proc = lab.hosts[0].popen(["sleep", "30"])
    assert proc.poll() is not None  # background processes are killed first
    assert not names & set(lab_namespaces())


def test_segments_and_dummy_interfaces(lab_factory: Callable[..., Lab]) -> None:
    lab = lab_factory(3, segments=2)
    _needs_netns(lab)
    h1, h2, h3 = lab.hosts
    seg1 = lab.segments[1]
    assert seg1.subnet != lab.segments[0].subnet
    e1 = h1.add_interface(seg1)
    e2 = h2.add_interface(1)
    assert (e1.name, e2.name) == ("eth1", "eth1")
    assert h1.reachable(e2.ip)
    assert not h3.reachable(e2.ip, timeout=0.3)  # h3 is not on segment 1
    # partition only segment 0 of h2: segment 1 still works
    lab.link_down(h2, segment=0)
    assert h1.reachable(e2.ip)
    assert not h1.reachable(h2.ip, timeout=0.3)
    lab.link_up(h2)
    seg2 = lab.add_segment()
    assert seg2.index == 2 and seg2.bridge == "br2"
    d = h3.add_dummy_interface("dum0", "10.99.0.3/24")
    assert d.ip == "10.99.0.3"
    assert "10.99.0.3/24" in h3.run(["ip", "-o", "addr", "show", "dev", "dum0"]).stdout
    with pytest.raises(LabError):
        h1.add_interface(seg1)  # already there


def test_loopback_mode_forced(lab_factory: Callable[..., Lab],
                              monkeypatch: pytest.MonkeyPatch, fake_node: list[str]) -> None:
    monkeypatch.setenv("LANCHAT_LAB_MODE", "loopback")
    lab = lab_factory(3, lanchat_cmd=fake_node)
    assert lab.mode == "loopback"
    assert [h.ip for h in lab] == ["127.0.0.1"] * 3
    assert all(h.ns is None for h in lab)
    assert lab.hosts[0].run(["true"]).returncode == 0
    nodes = [h.start_node(nick=f"n{h.index}") for h in lab]
    readies = [n.wait_event("ready") for n in nodes]
    assert all(r["addresses"] == ["127.0.0.1"] for r in readies)
    for r, n in zip(readies, nodes, strict=True):
        assert r["args"][:2] == ["--home", str(n.home)]
    assert len({r["port"] for r in readies}) == 3  # distinct free ports
    with pytest.raises(LabError):
        lab.hosts[0].start_node("--interface", "10.0.0.1", nick="unsafe")
    for fn in (lab.link_down, lab.link_up):
        with pytest.raises(pytest.skip.Exception):
            fn(lab.hosts[0])
    with pytest.raises(pytest.skip.Exception):
        lab.add_segment()
    # a restart keeps the port and home
    again = nodes[0].restart()
    r = again.wait_event("ready")
    assert r["port"] == readies[0]["port"] and again.home == nodes[0].home
    assert Lab(1, mode="loopback", base_dir=lab.base_dir / "x").mode == "loopback"


def test_lanchat_proc_with_fake_node(lab_factory: Callable[..., Lab],
                                     fake_node: list[str]) -> None:
    lab = lab_factory(2, lanchat_cmd=fake_node)
    h1 = lab.hosts[0]
    node = h1.start_node("--no-mdns", nick="alice")
    ready = node.wait_event("ready", nick="alice")
    assert ready["pid"] == node.pid  # `ip netns exec` execs: Popen.pid is the node
    assert "--no-mdns" in ready["args"] and ready["args"][-2:] == ["run", "--json"]
    if lab.mode == "netns":
        assert ready["port"] == 47800
    assert node.wait_event("_nonjson")["line"] == "starting (not json)"
    # consumed events are not returned twice; since= limits to later events
    node.command("one")
    node.command("two")
    m2 = node.wait_event("message", text="two")
    m1 = node.wait_event("message", match={"from": {"nick": "echo"}})
    assert (m1["text"], m2["text"]) == ("one", "two")
    mark = node.mark()
    node.command("three")
    assert node.wait_event("message", since=mark)["text"] == "three"
    assert node.wait_event("message", text="one", consume=False)["id"] == "one"
    with pytest.raises(AssertionError, match="(?s)timed out.*fake node stderr line"):
        node.wait_event("message", timeout=0.2)
    with pytest.raises(AssertionError, match="timed out"):
        node.wait_event("message", timeout=0.2, pred=lambda e: e["text"] == "nope")
    assert "fake node stderr line" in node.stderr_text()
    # stop via /quit
    assert node.stop() == 0
    assert node.events[-1]["event"] == "output"
    with pytest.raises(AssertionError, match="process ended"):
        node.wait_event("never")
    # restart: same home/args, fresh events
    node2 = node.restart()
    assert node2.pid != node.pid and node2.home == node.home
    assert node2.wait_event("ready")["args"] == ready["args"]
    node2.kill()
    assert node2.wait_exit(5) == -signal.SIGKILL
    # a node that ignores /quit and SIGTERM ends up SIGKILLed
    node3 = node2.restart()
    node3.wait_event("ready")
    node3.command("/ignore-quit")
    node3.wait_event("output", command="/ignore-quit")
    t0 = time.monotonic()
    assert node3.stop(timeout=0.3, term_grace=0.3) == -signal.SIGKILL
    assert time.monotonic() - t0 < 5
    # events are JSON objects with event + ts
    assert all("ts" in e for e in node2.events if e["event"] != "_nonjson")
    json.dumps(node2.events)


def test_teardown_kills_nodes(tmp_path: Path, fake_node: list[str]) -> None:
    with Lab(2, base_dir=tmp_path, lanchat_cmd=fake_node) as lab:
        hosts: list[Host] = lab.hosts
        nodes = [h.start_node(nick="n") for h in hosts]
        for n in nodes:
            n.wait_event("ready")
    assert all(n.returncode is not None for n in nodes)
