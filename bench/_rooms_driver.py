"""In-process lanchat nodes with rooms, for bench_rooms.py (run inside a lab namespace
through `Host.popen`; every answer is one JSON line {"kind": ...}).

    python -m bench._rooms_driver --base DIR --count K --ip IP --nick PREFIX [--peer A:P]...

Starts K nodes (each its own home, port, loop and event threads; beacon discovery on the
host's interface, no mDNS), prints {"kind": "ready", "ids": [...], "ports": [...]}, then
takes one command per stdin line:

    join ROOM I,J,..          nodes I, J join ROOM
    members ROOM N S          wait (S s) until every joined local node sees N members
    post ROOM I COUNT RATE [START]  node I posts COUNT texts (numbered from START) at
                              RATE/s (0: at once); answers
                              the send time of each message id
    direct I PEER COUNT RATE  node I sends COUNT direct messages to PEER at RATE/s
    fan I PEERS COUNT RATE    node I queues COUNT messages, each to every peer in PEERS
                              (comma-separated ids) as one broadcast (the outbox path)
    sessions I PEERS          node I sends one direct message to each of PEERS (opens
                              sessions)
    got KIND AUTHOR N S [I]   KIND is a room or "direct", then ":" and the texts' first
                              letter (r: posts, d: direct, f: fan, s: sessions);
                              wait (S s) until every local node that is not AUTHOR (or node I) has N
                              messages from AUTHOR (KIND: a room name, or "direct");
                              answers per message id the last arrival time over the local
                              nodes, plus duplicates and order breaks
    delivered I N S [SKIP]    wait until node I has SKIP + N `delivered` events of
                              direct messages; the times of the N after the first SKIP
    gone I PEER S             wait until node I has seen PEER leave (peer_left)
    close I / open I          stop node I / start it again on the same home and port
    rooms I N                 node I joins N rooms of its own (#mem0...); the Python heap
                              before and after (KiB, tracemalloc)
    rss                       VmRSS of this process in KiB
    quit

Times are time.time() (one clock for every namespace).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import tracemalloc
from collections import defaultdict
from pathlib import Path
from typing import Any

from lanchat import discovery, rooms
from lanchat.config import Config
from lanchat.events import Event
from lanchat.node import Node
from lanchat.rooms import Rooms


def out(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


def text_for(i: int, prefix: str) -> str:
    """40-character message text; the index says the author's order."""
    return f"{prefix}{i:09d} ".ljust(40, "x")


class Recorder:
    """Per node: arrival time of every message by id, per author/kind, duplicates, order
    breaks, and `delivered` times (event thread)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.arrived: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
        self.last_index: dict[tuple[str, str], int] = {}
        self.dups = 0
        self.order_breaks = 0
        self.delivered: list[float] = []
        self.members: dict[str, set[str]] = defaultdict(set)
        self.left: set[str] = set()

    def __call__(self, ev: Event) -> None:
        now = time.time()
        f = ev.fields
        with self.cond:
            if ev.name == "message":
                key = (f"{f.get('room') or 'direct'}:{f['text'][:1]}", f["from"]["id"])
                got = self.arrived[key]
                if f["id"] in got:
                    self.dups += 1
                got[f["id"]] = now
                index = int(f["text"][1:10]) if f["text"][1:10].isdigit() else -1
                if index <= self.last_index.get(key, -1):
                    self.order_breaks += 1
                self.last_index[key] = index
            elif ev.name == "delivered" and not f.get("room"):
                self.delivered.append(now)
            elif ev.name == "peer_left":
                self.left.add(f["peer"]["id"])
            elif ev.name == "peer_joined":
                self.left.discard(f["peer"]["id"])
            elif ev.name == "room_joined":
                self.members[f["room"]] |= {m["id"] for m in f["members"]}
            elif ev.name == "member_joined":
                self.members[f["room"]].add(f["member"]["id"])
            elif ev.name == "member_left":
                self.members[f["room"]].discard(f["member"]["id"])
            self.cond.notify_all()

    def wait(self, pred: Any, timeout: float) -> bool:
        with self.cond:
            return bool(self.cond.wait_for(pred, timeout))


class Local:
    """One in-process node and its recorder."""

    def __init__(self, home: Path, nick: str, ip: str, peers: list[str]) -> None:
        self.home, self.nick, self.ip, self.peers = home, nick, ip, peers
        self.port = 0
        self.rec = Recorder()
        self.node: Node | None = None
        self.rooms: Rooms | None = None

    def open(self) -> None:
        node = Node(Config(home=self.home, nick=self.nick, port=self.port, interfaces=[self.ip],
                           peers=self.peers, mdns=False, beacon=True))
        discovery.attach(node)
        self.rooms = rooms.attach(node)
        node.subscribe(self.rec)
        node.start()
        self.node, self.port = node, node.port

    def close(self) -> None:
        if self.node is not None:
            self.node.close()
            self.node = None


def _pace(count: int, rate: float, send: Any) -> dict[str, float]:
    sends: dict[str, float] = {}
    start = time.perf_counter()
    for i in range(count):
        if rate:
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)  # pacing the sender, not waiting for a condition
        t = time.time()
        sends[send(i)] = t
    return sends


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--ip", required=True)
    ap.add_argument("--nick", default="n")
    ap.add_argument("--peer", action="append", default=[])
    args = ap.parse_args()
    base = Path(args.base)
    nodes = [Local(base / f"{args.nick}{i}", f"{args.nick}{i}", args.ip, args.peer)
             for i in range(args.count)]
    for n in nodes:
        n.open()
    out({"kind": "ready", "ids": [n.node.node_id for n in nodes if n.node],
         "ports": [n.port for n in nodes]})
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        cmd, rest = words[0], words[1:]
        if cmd == "quit":
            break
        out(run(cmd, rest, nodes))
    for n in nodes:
        n.close()


def run(cmd: str, a: list[str], nodes: list[Local]) -> dict[str, Any]:  # noqa: C901
    if cmd == "join":
        for i in map(int, a[1].split(",")):
            assert nodes[i].rooms is not None
            nodes[i].rooms.join(a[0])
        return {"kind": "joined"}
    if cmd == "members":
        room, want, timeout = a[0], int(a[1]), float(a[2])
        joined = [n for n in nodes if n.rooms is not None and room in n.rooms.joined()]
        ok = all(n.rec.wait(lambda n=n: len(n.rec.members[room]) >= want, timeout)
                 for n in joined)
        return {"kind": "members", "ok": ok,
                "seen": [len(n.rec.members[room]) for n in joined]}
    if cmd == "post":
        room, i, count, rate = a[0], int(a[1]), int(a[2]), float(a[3])
        start = int(a[4]) if len(a) > 4 else 0
        r = nodes[i].rooms
        assert r is not None
        sends = _pace(count, rate, lambda k: r.post(room, text_for(start + k, "r"))["id"])
        return {"kind": "sent", "sends": sends}
    if cmd == "direct":
        i, peer, count, rate = int(a[0]), a[1], int(a[2]), float(a[3])
        node = nodes[i].node
        assert node is not None
        sends = _pace(count, rate, lambda k: node.send(peer, text_for(k, "d")))
        return {"kind": "sent", "sends": sends}
    if cmd == "sessions":
        node = nodes[int(a[0])].node
        assert node is not None
        sends = {node.send(peer, text_for(k, "s")): time.time()
                 for k, peer in enumerate(a[1].split(","))}
        return {"kind": "sent", "sends": sends}
    if cmd == "fan":
        i, peers, count, rate = int(a[0]), a[1].split(","), int(a[2]), float(a[3])
        node = nodes[i].node
        assert node is not None
        sends = _pace(count, rate,
                      lambda k: node._queue(peers, text_for(k, "f"), broadcast=True))
        return {"kind": "sent", "sends": sends}
    if cmd == "got":
        kind, author, want, timeout = a[0], a[1], int(a[2]), float(a[3])
        key = (kind, author)
        readers = [n for n in nodes if n.node is not None and n.node.node_id != author]
        if len(a) > 4:
            readers = [n for n in [nodes[int(a[4])]] if n.node is not None
                       and n.node.node_id != author]
        ok = all(n.rec.wait(lambda n=n: len(n.rec.arrived[key]) >= want, timeout)
                 for n in readers)
        last: dict[str, float] = {}
        for n in readers:
            with n.rec.cond:
                for msg_id, t in n.rec.arrived[key].items():
                    last[msg_id] = max(t, last.get(msg_id, 0.0))
        return {"kind": "got", "ok": ok, "last": last,
                "counts": [len(n.rec.arrived[key]) for n in readers],
                "dups": sum(n.rec.dups for n in readers),
                "order_breaks": sum(n.rec.order_breaks for n in readers)}
    if cmd == "delivered":
        i, want, timeout = int(a[0]), int(a[1]), float(a[2])
        skip = int(a[3]) if len(a) > 3 else 0
        rec = nodes[i].rec
        ok = rec.wait(lambda: len(rec.delivered) >= skip + want, timeout)
        return {"kind": "delivered", "ok": ok, "times": rec.delivered[skip:skip + want]}
    if cmd == "gone":
        rec = nodes[int(a[0])].rec
        ok = rec.wait(lambda: a[1] in rec.left, float(a[2]))
        return {"kind": "gone", "ok": ok}
    if cmd == "close":
        nodes[int(a[0])].close()
        return {"kind": "closed"}
    if cmd == "open":
        t = time.time()
        nodes[int(a[0])].open()
        return {"kind": "opened", "t": t, "ready": time.time()}
    if cmd == "rooms":
        i, count = int(a[0]), int(a[1])
        r = nodes[i].rooms
        assert r is not None
        tracemalloc.start()  # RSS moves in pages and arenas: too coarse for one room
        before = tracemalloc.get_traced_memory()[0]
        for k in range(count):
            r.join(f"#mem{k}")
        after = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        return {"kind": "rooms", "before": before / 1024, "after": after / 1024}
    if cmd == "rss":
        return {"kind": "rss", "kib": rss_kib()}
    return {"kind": "error", "message": f"unknown command {cmd}"}


if __name__ == "__main__":
    main()
