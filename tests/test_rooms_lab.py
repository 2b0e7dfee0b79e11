"""Rooms with real `lanchat run --json` processes on lab hosts: order, crashes, partitions,
private rooms, kicks and forged copies."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab import FAST_LIVENESS, Host, Lab, LanchatProc

FAST = FAST_LIVENESS
PEER_SCRIPT = Path(__file__).with_name("room_peer.py")
QUIT_WAIT_S = 30.0  # /quit on a loaded machine: the node's close may take its full 10 s


def start(lab: Lab, nicks: list[str]) -> list[LanchatProc]:
    """One node per host (beacon discovery, no mDNS); each sees all the others."""
    procs = [h.start_node("--no-mdns", nick=n, env=FAST) for h, n in zip(lab, nicks,
                                                                          strict=False)]
    for p in procs:
        p.wait_event("ready", timeout=30)
    for p in procs:
        p.wait_count("peer_joined", len(procs) - 1, timeout=30)
    return procs


def members(events: list[dict[str, Any]], room: str) -> set[str]:
    """Who a node's events say is in `room` besides itself."""
    ids: set[str] = set()
    for e in events:
        if e.get("room") != room:
            continue
        if e["event"] == "room_joined":
            ids |= {m["id"] for m in e["members"]}
        elif e["event"] == "member_joined":
            ids.add(e["member"]["id"])
        elif e["event"] == "member_left":
            ids.discard(e["member"]["id"])
    return ids


def own_id(proc: LanchatProc) -> str:
    return str(proc.events_named("ready")[0]["id"])


def join_all(procs: list[LanchatProc], room: str) -> None:
    """Everyone joins; wait until each knows every member."""
    for p in procs:
        p.command(f"/join {room}")
        p.wait_event("output", command=f"/join {room}")
    everyone = {own_id(p) for p in procs}
    for p in procs:
        p.wait_until(lambda ev: members(ev, room) >= everyone, 30, f"{p.nick} sees all")


def post(proc: LanchatProc, room: str, texts: list[str]) -> None:
    for text in texts:
        proc.command(f"/msg {room} {text}")


def room_texts(proc: LanchatProc, room: str, author: LanchatProc) -> list[str]:
    aid = own_id(author)
    return [e["text"] for e in proc.events_named("message")
            if e.get("room") == room and e["from"]["id"] == aid]


def wait_texts(proc: LanchatProc, room: str, author: LanchatProc, n: int,
               timeout: float = 60) -> list[str]:
    aid = own_id(author)
    got = proc.wait_count("message", n, timeout,
                          pred=lambda e: e.get("room") == room and e["from"]["id"] == aid)
    return [e["text"] for e in got]


def stored(proc: LanchatProc, room: str, author: LanchatProc) -> list[str]:
    """An author's messages in a node's database, in the order they were stored."""
    db = sqlite3.connect(proc.home / "lanchat.db")
    try:
        return [r[0] for r in db.execute(
            "SELECT text FROM room_log WHERE room=? AND author=? ORDER BY seq",
            (room, own_id(author)))]
    finally:
        db.close()


def counters(proc: LanchatProc) -> dict[str, int]:
    mark = proc.mark()
    proc.command("/doctor")
    out = proc.wait_event("output", command="/doctor", since=mark, timeout=20)
    return dict(out["data"]["counters"])


def run_peer(host: Host, mode: str, home: Path, room: str, victim: str,
             targets: list[LanchatProc]) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """Start the misbehaving peer; return it once its frames were acked by everyone."""
    addrs = [f"{own_id(t)}@{t.host.ip}:{t.port}" for t in targets]
    proc = host.popen([sys.executable, str(PEER_SCRIPT), mode, str(home), room, victim,
                       *addrs], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE, env=None)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line, f"{mode} peer failed: {proc.stderr.read() if proc.stderr else ''}"
    return proc, json.loads(line)


def finish_peer(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate("", timeout=30)
    assert proc.returncode == 0, err
    return dict(json.loads(out.strip().splitlines()[-1]))


def test_open_room_order_forgery_and_a_member_killed_mid_stream(lab3: Lab) -> None:
    """Three hosts in #lunch: all get all, once, in order; a forged copy is dropped; carol,
    SIGKILLed while the others post 500, gets all 500 once each when she is back."""
    alice, bob, carol = procs = start(lab3, ["alice", "bob", "carol"])
    join_all(procs, "#lunch")
    sent = {p.nick: [f"{p.nick}-{i}" for i in range(20)] for p in procs}
    for p in procs:
        post(p, "#lunch", sent[p.nick])
    for reader in procs:
        for author in procs:
            if author is not reader:
                assert wait_texts(reader, "#lunch", author, 20) == sent[author.nick]
    alice.wait_count("delivered", 40, pred=lambda e: e.get("room") == "#lunch")

    # a member relays a copy that names alice as author but is not signed by her key
    forger, acked = run_peer(lab3[2], "forge", lab3.base_dir / "forger", "#lunch",
                             own_id(alice), [bob, carol])
    assert acked["acked"] >= 2
    for p in (bob, carol):
        assert counters(p).get("room_forged", 0) >= 1
        assert "forged words" not in room_texts(p, "#lunch", alice)
    finish_peer(forger)

    carol.kill(signal.SIGKILL)
    carol.wait_exit(10)
    burst = {p.nick: [f"{p.nick}-late-{i}" for i in range(250)] for p in (alice, bob)}
    post(alice, "#lunch", burst["alice"])
    post(bob, "#lunch", burst["bob"])
    assert wait_texts(bob, "#lunch", alice, 270)[20:] == burst["alice"]
    assert wait_texts(alice, "#lunch", bob, 270)[20:] == burst["bob"]
    carol = carol.restart()
    for author in (alice, bob):
        got = wait_texts(carol, "#lunch", author, 250, timeout=90)
        assert got == burst[author.nick], "all 250 of each, once, in order"
    assert [p.stop(QUIT_WAIT_S) for p in (alice, bob, carol)] == [0, 0, 0]
    for author in (alice, bob):
        assert stored(carol, "#lunch", author) == sent[author.nick] + burst[author.nick]


def test_both_halves_of_a_partition_post_and_every_member_ends_with_everything(
        lab_factory: Callable[..., Lab]) -> None:
    """#p spans two halves; the link between them goes down, both post, it comes back:
    every member has every message once, in each author's order."""
    lab = lab_factory(4)
    procs = start(lab, ["p1", "p2", "p3", "p4"])
    join_all(procs, "#p")
    trunk = lab.split(lab.hosts[2:])
    trunk.down()
    left, right = procs[:2], procs[2:]
    for side, other in ((left, right), (right, left)):
        for p in side:
            for q in other:
                p.wait_event("peer_left", peer={"id": own_id(q)}, timeout=30)
    sent = {p.nick: [f"{p.nick}-{i}" for i in range(50)] for p in procs}
    for p in procs:
        post(p, "#p", sent[p.nick])
    for side in (left, right):  # each half talks among itself meanwhile
        assert wait_texts(side[0], "#p", side[1], 50) == sent[side[1].nick]
    trunk.up()
    for reader in procs:
        for author in procs:
            if author is not reader:
                got = wait_texts(reader, "#p", author, 50, timeout=90)
                assert got == sent[author.nick]
    for p in procs:
        assert p.stop(QUIT_WAIT_S) == 0
    for reader in procs:
        for author in procs:
            if author is not reader:
                assert room_texts(reader, "#p", author) == sent[author.nick]
                assert stored(reader, "#p", author) == sent[author.nick]


def test_a_private_room_lets_no_outsider_in_and_a_kick_is_final(lab3: Lab) -> None:
    """#secret is alice's list: an outsider who knows the name and dials every member gets
    nothing and cannot post; bob, kicked, gets nothing new while carol still does."""
    alice, bob, carol = start(lab3, ["alice", "bob", "carol"])
    alice.command("/join #secret private")
    alice.wait_event("room_joined", room="#secret", reason="created")
    for p in (bob, carol):
        alice.command(f"/invite {own_id(p)} #secret")
        p.wait_event("room_invited", room="#secret", by={"id": own_id(alice),
                                                          "nick": "alice"}, timeout=30)
        p.command("/join #secret")  # nothing is joined before the user says yes
        p.wait_event("room_joined", room="#secret", reason="invited", timeout=30)
    everyone = {own_id(p) for p in (alice, bob, carol)}
    for p in (alice, bob, carol):
        p.wait_until(lambda ev: members(ev, "#secret") >= everyone, 30, "all in #secret")
    post(bob, "#secret", ["hello secret"])
    assert wait_texts(alice, "#secret", bob, 1) == ["hello secret"]
    assert wait_texts(carol, "#secret", bob, 1) == ["hello secret"]

    intruder, acked = run_peer(lab3[2], "intrude", lab3.base_dir / "intruder",
                               f"#secret@{own_id(alice)}", "-", [alice, bob])
    assert acked["acked"] >= 2  # its post reached both members, who dropped it
    post(alice, "#secret", ["after the intruder"])
    assert wait_texts(bob, "#secret", alice, 1) == ["after the intruder"]
    seen = finish_peer(intruder)
    assert seen == {"frames": 0, "messages": 0}, "the outsider received nothing"
    for p in (alice, bob):
        assert counters(p).get("room_refused", 0) >= 2  # its claim, its sync, its post
        assert all(e["text"] != "let me in" for e in p.events_named("message"))

    alice.command(f"/kick {own_id(bob)} #secret")
    bob.wait_event("room_left", room="#secret", reason="kicked", timeout=30)
    carol.wait_event("member_left", room="#secret", member={"id": own_id(bob)}, timeout=30)
    mark = bob.mark()
    post(alice, "#secret", ["after the kick"])
    post(carol, "#secret", ["carol after the kick"])
    assert wait_texts(carol, "#secret", alice, 2)[-1] == "after the kick"
    assert wait_texts(alice, "#secret", carol, 1) == ["carol after the kick"]
    alice.wait_count("delivered", 1, pred=lambda e: e.get("room") == "#secret"
                     and e["to"] == own_id(carol) and e["of"] == 1)
    assert [e for e in bob.events[mark:] if e["event"] == "message"] == []
    for p in (alice, bob, carol):
        assert p.stop(QUIT_WAIT_S) == 0
