"""Several in-process lanchat nodes in one process, for the scale benchmark (run inside a
lab namespace through `Host.popen`; every mode prints JSON lines {"kind": ...}).

    nodes --base DIR --count K --ip IP --prefix NICK --host NAME [--discovery]
          [--peer IP:PORT] [--expect N]
        Imports everything, prints {"kind": "loaded"}, waits for a "go" line on stdin, then
        starts K nodes (own home, own port, own loop and event threads each) and prints
        {"kind": "ready", ...}. With --expect N it prints {"kind": "converged", ...} once
        every local node has seen N distinct peers (peer_joined). Then it takes commands,
        one per line on stdin, each answered with one JSON line:
          conv                 per node: ready time and when it had seen N peers (any
                               source / by beacon / by mDNS), peers seen, peer_left count
          stats                per node: beacon datagrams sent, mDNS sightings, sessions
          wait_joined N S      node 0 has N peers (waits up to S seconds)
          bcast R              node 0: R broadcasts one after another, each timed from
                               broadcast() to the last `delivered`
          fanout_direct R      node 0: R rounds of one node.send() per peer, back to back,
                               timed to the last `delivered`
          direct R             node 0: R direct sends to one peer, each to its `delivered`
          flood M              node 0: M broadcasts back to back; M x peers / time to the
                               last `delivered`
          quit                 close every node (timed), then exit
    tlsserve --ip IP --cert C --key K
        Plain TLS 1.3 server (lanchat's settings), one thread per connection: reads
        4-byte-length frames and answers each with one byte. Prints {"kind": "listening"}.
    tlsfan --targets IP:PORT,... --conns N --rounds R --flood M --size BYTES
        Baseline fan-out: N TLS connections spread over the targets; R rounds of one frame
        to every connection then one ack from each (timed); then M frames to every
        connection, back to back, until all M x N acks are in.

Times are time.time() (one clock for every namespace) for cross-process figures and
perf_counter for in-process intervals.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench._tls_baseline import client_ctx, recv_exact, server_ctx

clock = time.perf_counter
HEADER = struct.Struct(">I")


def out(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


def text_for(i: int, prefix: str = "b") -> str:
    """40-character message text (as bench_messaging)."""
    return f"{prefix}{i:09d} ".ljust(40, "x")


# --------------------------------------------------------------------------- nodes


class Recorder:
    """Per node: when each peer was first seen (by any source, beacon, mDNS), peer_left
    events, and `delivered` events by message id. Runs on the node's event thread."""

    def __init__(self, expect: int) -> None:
        self.expect = expect
        self.cond = threading.Condition()
        self.joined: dict[str, float] = {}
        self.by_via: dict[str, dict[str, float]] = {"beacon": {}, "mdns": {}}
        self.full_at: dict[str, float] = {}  # "any" / "beacon" / "mdns" -> time
        self.left: dict[str, int] = defaultdict(int)
        self.delivered: dict[str, dict[str, float]] = defaultdict(dict)
        self.n_delivered = 0
        self.not_delivered = 0
        self.ready_at = 0.0

    def __call__(self, ev: Any) -> None:
        name = ev.name
        if name == "delivered":
            now = clock()
            with self.cond:
                self.delivered[ev["id"]][ev["to"]] = now
                self.n_delivered += 1
                self.cond.notify_all()
            return
        if name == "not_delivered":
            self.not_delivered += 1
            return
        if name == "ready":
            with self.cond:
                self.ready_at = ev.ts
                self.cond.notify_all()
            return
        if name == "peer_left":
            self.left[str(ev.fields.get("reason"))] += 1
            return
        if name not in ("peer_joined", "peer_updated"):
            return
        peer = ev["peer"]
        pid = peer["id"]
        with self.cond:
            if name == "peer_joined" and pid not in self.joined:
                self.joined[pid] = ev.ts
                if self.expect and len(self.joined) >= self.expect:
                    self.full_at.setdefault("any", ev.ts)
            for via in peer.get("via") or ():
                seen = self.by_via.get(via)
                if seen is not None and pid not in seen:
                    seen[pid] = ev.ts
                    if self.expect and len(seen) >= self.expect:
                        self.full_at.setdefault(via, ev.ts)
            self.cond.notify_all()

    def wait(self, pred: Any, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(pred, timeout)


def _node_peer_ids(node: Any) -> list[str]:
    return [p["id"] for p in node.peers()]


def cmd_bcast(node: Any, rec: Recorder, rounds: int) -> dict[str, Any]:
    samples, npeers, failed = [], [], 0
    for i in range(rounds):
        t0 = clock()
        mid, peers = node.broadcast(text_for(i))
        want = len(peers)
        ok = rec.wait(lambda mid=mid, want=want: len(rec.delivered.get(mid, ())) >= want, 60)
        if not ok:
            failed += 1
            continue
        samples.append(max(rec.delivered[mid].values()) - t0)
        npeers.append(len(peers))
    return {"kind": "bcast", "samples_s": samples, "peers": npeers, "failed": failed}


def cmd_fanout_direct(node: Any, rec: Recorder, rounds: int) -> dict[str, Any]:
    targets = _node_peer_ids(node)
    samples = []
    for i in range(rounds):
        t0 = clock()
        mids = [node.send(pid, text_for(i, "f")) for pid in targets]
        rec.wait(lambda mids=mids: all(m in rec.delivered for m in mids), 60)
        samples.append(max(next(iter(rec.delivered[m].values())) for m in mids) - t0)
    return {"kind": "fanout_direct", "samples_s": samples, "peers": len(targets)}


def cmd_direct(node: Any, rec: Recorder, rounds: int) -> dict[str, Any]:
    target = _node_peer_ids(node)[0]
    samples = []
    for i in range(rounds + 5):
        t0 = clock()
        mid = node.send(target, text_for(i, "d"))
        rec.wait(lambda mid=mid: mid in rec.delivered, 30)
        if i >= 5:
            samples.append(rec.delivered[mid][target] - t0)
    return {"kind": "direct", "samples_s": samples}


def cmd_flood(node: Any, rec: Recorder, m: int) -> dict[str, Any]:
    npeers = len(_node_peer_ids(node))
    with rec.cond:
        base = rec.n_delivered
    want = base + m * npeers
    t0 = clock()
    for i in range(m):
        node.broadcast(text_for(i, "F"))
    t_sent = clock()
    ok = rec.wait(lambda: rec.n_delivered >= want, max(60.0, m * npeers / 500))
    t_end = clock()
    got = rec.n_delivered - base
    secs = t_end - t0
    return {"kind": "flood", "m": m, "peers": npeers, "deliveries": got, "ok": ok,
            "seconds": secs, "send_seconds": t_sent - t0, "rate": got / secs}


def nodes(args: argparse.Namespace) -> None:
    # everything a node needs, imported before the floor RSS is taken
    import cryptography.x509  # noqa: F401  (lanchat loads it lazily: sessions, new keys)
    import zeroconf  # noqa: F401

    import lanchat.discovery  # noqa: F401
    import lanchat.discovery.mdns  # noqa: F401
    from lanchat.assembly import open_node
    from lanchat.config import Config
    from lanchat.node import Node

    out({"kind": "loaded", "pid": os.getpid()})
    line = sys.stdin.readline()
    if line.strip() != "go":
        return
    go = time.time()
    base = Path(args.base)
    nodes: list[Node] = []
    recs: list[Recorder] = []
    started: list[float] = []
    for i in range(args.count):
        nick = f"{args.prefix}{i}"
        cfg = Config(home=base / nick, nick=nick, port=0, interfaces=[args.ip],
                     peers=[args.peer] if args.peer else [], mdns=args.discovery,
                     beacon=args.discovery, host=args.host)
        node = open_node(cfg)  # as `lanchat run`: discovery if on, file transfer
        rec = Recorder(args.expect)
        node.subscribe(rec)
        node.start()
        started.append(time.time())
        rec.wait(lambda rec=rec: rec.ready_at > 0, 10)
        nodes.append(node)
        recs.append(rec)
    out({"kind": "ready", "go": go, "started": started, "ready": [r.ready_at for r in recs],
         "ids": [n.node_id for n in nodes], "ports": [n.port for n in nodes]})

    if args.expect:
        def watch() -> None:
            deadline = time.monotonic() + args.converge_timeout
            for rec in recs:
                rec.wait(lambda rec=rec: "any" in rec.full_at,
                         max(0.0, deadline - time.monotonic()))
            out({"kind": "converged" if all("any" in r.full_at for r in recs) else "partial",
                 "full_at": [r.full_at.get("any") for r in recs],
                 "seen": [len(r.joined) for r in recs]})
        threading.Thread(target=watch, daemon=True).start()

    for line in sys.stdin:
        parts = line.split()
        if not parts:
            continue
        cmd, rest = parts[0], [float(x) for x in parts[1:]]
        if cmd == "quit":
            break
        try:
            if cmd == "conv":
                out({"kind": "conv", "nodes": [
                    {"ready": r.ready_at, "full": dict(r.full_at), "seen": len(r.joined),
                     "beacon": len(r.by_via["beacon"]), "mdns": len(r.by_via["mdns"]),
                     "left": dict(r.left), "not_delivered": r.not_delivered}
                    for r in recs]})
            elif cmd == "stats":
                rows = []
                for n in nodes:
                    st = n.stats()
                    disc = st["extensions"].get("Discovery") or {}
                    beacon = disc.get("beacon") or {}
                    mdns = disc.get("mdns") or {}
                    rows.append({"beacon_seq": beacon.get("seq", 0),
                                 "beacon_accepted": beacon.get("accepted", 0),
                                 "beacon_dropped": beacon.get("dropped") or {},
                                 "mdns_sightings": mdns.get("sightings", 0),
                                 "mdns_seen": mdns.get("services_seen", 0),
                                 "mdns_error": mdns.get("error"),
                                 "sessions": len(st["sessions"]),
                                 "counters": st["counters"]})
                out({"kind": "stats", "nodes": rows})
            elif cmd == "wait_joined":
                n, timeout = int(rest[0]), rest[1]
                ok = recs[0].wait(lambda n=n: len(recs[0].joined) >= n, timeout)
                out({"kind": "joined", "ok": ok, "n": len(recs[0].joined)})
            elif cmd == "bcast":
                out(cmd_bcast(nodes[0], recs[0], int(rest[0])))
            elif cmd == "fanout_direct":
                out(cmd_fanout_direct(nodes[0], recs[0], int(rest[0])))
            elif cmd == "direct":
                out(cmd_direct(nodes[0], recs[0], int(rest[0])))
            elif cmd == "flood":
                out(cmd_flood(nodes[0], recs[0], int(rest[0])))
            else:
                out({"kind": "error", "error": f"unknown command {cmd}"})
        except Exception as exc:  # noqa: BLE001 - report, keep serving
            out({"kind": "error", "error": f"{cmd}: {type(exc).__name__}: {exc}"})
    t0 = clock()
    for n in nodes:
        n.close()
    out({"kind": "closed", "seconds": clock() - t0})


# --------------------------------------------------------------------------- TLS baseline


def tlsserve(args: argparse.Namespace) -> None:
    ctx = server_ctx(args.cert, args.key)
    listener = socket.create_server((args.ip, 0), backlog=256)

    def serve(conn: socket.socket) -> None:
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            tls = ctx.wrap_socket(conn, server_side=True)
            buf = bytearray()
            while True:
                data = tls.recv(262144)
                if not data:
                    return
                buf += data
                pos, end, n = 0, len(buf), 0
                while end - pos >= 4:
                    (length,) = HEADER.unpack_from(buf, pos)
                    if end - pos - 4 < length:
                        break
                    pos += 4 + length
                    n += 1
                del buf[:pos]
                if n:
                    tls.sendall(b"k" * n)
        except (OSError, ConnectionError):
            return
        finally:
            conn.close()

    def accept_loop() -> None:
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept_loop, daemon=True).start()
    out({"kind": "listening", "port": listener.getsockname()[1]})
    sys.stdin.read()
    os._exit(0)


def tlsfan(args: argparse.Namespace) -> None:
    ctx = client_ctx()
    targets = []
    for t in args.targets.split(","):
        host, _, port = t.rpartition(":")
        targets.append((host, int(port)))
    conns = []
    t0 = clock()
    for i in range(args.conns):
        s = socket.create_connection(targets[i % len(targets)], timeout=30)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conns.append(ctx.wrap_socket(s))
    connect_s = clock() - t0
    frame = HEADER.pack(args.size - 4) + b"x" * (args.size - 4)
    samples = []
    for i in range(args.rounds + 3):
        t0 = clock()
        for c in conns:
            c.sendall(frame)
        for c in conns:
            recv_exact(c, 1)
        if i >= 3:
            samples.append(clock() - t0)
    res: dict[str, Any] = {"kind": "tlsfan", "conns": len(conns), "connect_s": connect_s,
                           "samples_s": samples}
    if args.flood:
        t0 = clock()
        for _ in range(args.flood):
            for c in conns:
                c.sendall(frame)
        for c in conns:
            recv_exact(c, args.flood)
        secs = clock() - t0
        res.update(flood=args.flood, seconds=secs, rate=args.flood * len(conns) / secs)
    for c in conns:
        c.close()
    out(res)


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    n = sub.add_parser("nodes")
    n.add_argument("--base", required=True)
    n.add_argument("--count", type=int, default=5)
    n.add_argument("--ip", required=True)
    n.add_argument("--prefix", required=True)
    n.add_argument("--host", default="host")
    n.add_argument("--discovery", action="store_true")
    n.add_argument("--peer", default="")
    n.add_argument("--expect", type=int, default=0)
    n.add_argument("--converge-timeout", type=float, default=120.0)
    s = sub.add_parser("tlsserve")
    s.add_argument("--ip", required=True)
    s.add_argument("--cert", required=True)
    s.add_argument("--key", required=True)
    f = sub.add_parser("tlsfan")
    f.add_argument("--targets", required=True)
    f.add_argument("--conns", type=int, required=True)
    f.add_argument("--rounds", type=int, default=20)
    f.add_argument("--flood", type=int, default=0)
    f.add_argument("--size", type=int, default=158)
    args = p.parse_args()
    {"nodes": nodes, "tlsserve": tlsserve, "tlsfan": tlsfan}[args.cmd](args)


if __name__ == "__main__":
    main()
