"""In-process lanchat nodes for the benchmarks (run inside a lab namespace).

Driving load through `lanchat run --json` stdin costs a thread hop and an `output` event
per command, so the benchmark talks to `lanchat.node.Node` directly here. Every mode
prints JSON lines ({"kind": ...}) on stdout; diagnostics go to stderr.

    sink    --home H --nick bob --ip IP [--echo]
        a receiving node (no stdout per message). With --echo it answers every message
        whose text starts with "ping " with the same text, through the public node.send().
        Prints {"kind": "ready", "port", "id"}; runs until stdin closes; prints stats.
    client  --home H --nick alice --ip IP --peer IP:PORT [--rtt N] [--echo N]
            [--flood N] [--flood-api public|queue] [--warmup W]
        dials the peer, then runs the phases asked for, in this order:
        rtt   : N sequential messages, send() -> own `delivered` event (store, send,
                peer stores and acks, own commit of the ack)
        echo  : N sequential "ping" messages, send() -> the peer's echo arrives as `message`
        flood : N messages as fast as the API takes them; first send() -> last `delivered`
                ("public": node.send(peer_id, text) per message; "queue": the node's
                internal _queue(), i.e. without the per-call resolve() round trip)
    swarm   --base DIR --count K --ip IP --peer IP:PORT
        K nodes in this one process, each dialing the peer and sending it one message;
        prints {"kind": "ready", ...} once all are delivered; runs until stdin closes.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from lanchat.config import Config
from lanchat.events import Event
from lanchat.node import Node

clock = time.perf_counter


def out(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


def make_node(home: Path, nick: str, ip: str, peers: list[str] | None = None) -> Node:
    return Node(Config(home=home, nick=nick, port=0, interfaces=[ip], peers=peers or [],
                       mdns=False, beacon=False))


def settle() -> None:
    """Do what the `lanchat` command does once its one node has started (gc.freeze), so
    a driver process stands for it; a tree from before that change has nothing to do."""
    try:
        from lanchat.runtime import freeze_started, one_node_process
    except ImportError:
        return
    one_node_process()
    freeze_started()


def text_for(i: int, prefix: str = "m") -> str:
    """40-character message text."""
    return f"{prefix}{i:09d} ".ljust(40, "x")


# --------------------------------------------------------------------------- sink


def sink(args: argparse.Namespace) -> None:
    node = make_node(Path(args.home), args.nick, args.ip)
    received = [0]

    def on_event(ev: Event) -> None:
        if ev.name == "message":
            received[0] += 1
            text = ev["text"]
            if args.echo and text.startswith("ping "):
                node.send(ev["from"]["id"], text)

    node.subscribe(on_event)
    node.start()
    settle()
    out({"kind": "ready", "port": node.port, "id": node.node_id})
    sys.stdin.read()
    stats = node.stats()
    node.close()
    out({"kind": "stats", "received": received[0], "counters": stats["counters"]})


# --------------------------------------------------------------------------- client


class Waiter:
    """Records when events arrive, on the node's event thread."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.peer_id: str | None = None
        self.delivered: dict[str, float] = {}
        self.echoes: dict[str, float] = {}
        self.track = True
        self.flood_target = 0
        self.flood_count = 0
        self.flood_done = threading.Event()
        self.flood_last = 0.0

    def __call__(self, ev: Event) -> None:
        now = clock()
        name = ev.name
        if name == "delivered":
            if self.flood_target:
                self.flood_count += 1
                if self.flood_count >= self.flood_target:
                    self.flood_last = now
                    self.flood_done.set()
                return
            with self.cond:
                self.delivered[ev["id"]] = now
                self.cond.notify_all()
        elif name == "message":
            with self.cond:
                self.echoes[ev["text"]] = now
                self.cond.notify_all()
        elif name == "peer_joined" and self.peer_id is None:
            with self.cond:
                self.peer_id = ev["peer"]["id"]
                self.cond.notify_all()

    def wait(self, pred: Any, timeout: float = 30.0) -> None:
        with self.cond:
            if not self.cond.wait_for(pred, timeout):
                raise TimeoutError("benchmark event not seen in time")


def client(args: argparse.Namespace) -> None:
    node = make_node(Path(args.home), args.nick, args.ip, [args.peer])
    w = Waiter()
    node.subscribe(w)
    node.start()
    settle()
    w.wait(lambda: w.peer_id is not None)
    peer = w.peer_id
    assert peer is not None
    out({"kind": "connected", "peer": peer})

    if args.rtt:
        samples = []
        for i in range(args.warmup + args.rtt):
            t0 = clock()
            mid = node.send(peer, text_for(i, "d"))
            w.wait(lambda mid=mid: mid in w.delivered)
            if i >= args.warmup:
                samples.append(w.delivered[mid] - t0)
        out({"kind": "rtt", "samples_s": samples})

    if args.echo:
        samples = []
        for i in range(args.warmup + args.echo):
            text = text_for(i, "ping ")
            t0 = clock()
            mid = node.send(peer, text)
            w.wait(lambda text=text: text in w.echoes)
            if i >= args.warmup:
                samples.append(w.echoes[text] - t0)
            w.wait(lambda mid=mid: mid in w.delivered)
        out({"kind": "echo", "samples_s": samples})

    if args.flood:
        n = args.flood
        w.flood_target = n
        texts = [text_for(i) for i in range(n)]
        if args.profile:
            import cProfile
            prof = cProfile.Profile()
            prof.enable()
        cpu0 = time.process_time()  # every thread of this process: the sender's CPU
        t0 = clock()
        if args.flood_api == "public":
            send = node.send
            for text in texts:
                send(peer, text)
        else:
            queue = node._queue  # noqa: SLF001 - measures the pipeline without resolve()
            targets = [peer]
            for text in texts:
                queue(targets, text, broadcast=False)
        t_sent = clock()
        if args.profile:
            prof.disable()
            prof.dump_stats(args.profile)
        if not w.flood_done.wait(max(60.0, n / 2000)):
            out({"kind": "flood", "error": f"only {w.flood_count} of {n} delivered"})
        else:
            secs = w.flood_last - t0
            cpu_us = (time.process_time() - cpu0) / n * 1e6
            out({"kind": "flood", "api": args.flood_api, "n": n, "seconds": secs,
                 "send_seconds": t_sent - t0, "rate": n / secs, "cpu_us_per_msg": cpu_us,
                 "counters": node.stats()["counters"]})
    node.close()
    out({"kind": "done"})


# --------------------------------------------------------------------------- swarm


def swarm(args: argparse.Namespace) -> None:
    base = Path(args.base)
    nodes: list[Node] = []
    waiters: list[Waiter] = []
    for i in range(args.count):
        node = make_node(base / f"s{i:02d}", f"swarm{i:02d}", args.ip, [args.peer])
        w = Waiter()
        node.subscribe(w)
        node.start()
        nodes.append(node)
        waiters.append(w)
    mids = []
    for node, w in zip(nodes, waiters, strict=True):
        w.wait(lambda w=w: w.peer_id is not None)
        assert w.peer_id is not None
        mids.append(node.send(w.peer_id, "hello from the swarm"))
    for w, mid in zip(waiters, mids, strict=True):
        w.wait(lambda w=w, mid=mid: mid in w.delivered)
    out({"kind": "ready", "count": len(nodes)})
    sys.stdin.read()
    for node in nodes:
        node.close()


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sink")
    s.add_argument("--home", required=True)
    s.add_argument("--nick", default="bob")
    s.add_argument("--ip", required=True)
    s.add_argument("--echo", action="store_true")
    c = sub.add_parser("client")
    c.add_argument("--home", required=True)
    c.add_argument("--nick", default="alice")
    c.add_argument("--ip", required=True)
    c.add_argument("--peer", required=True)
    c.add_argument("--rtt", type=int, default=0)
    c.add_argument("--echo", type=int, default=0)
    c.add_argument("--flood", type=int, default=0)
    c.add_argument("--flood-api", choices=("public", "queue"), default="public")
    c.add_argument("--warmup", type=int, default=50)
    c.add_argument("--profile", default="", help="cProfile the sending thread to this file")
    w = sub.add_parser("swarm")
    w.add_argument("--base", required=True)
    w.add_argument("--count", type=int, default=20)
    w.add_argument("--ip", required=True)
    w.add_argument("--peer", required=True)
    args = p.parse_args()
    {"sink": sink, "client": client, "swarm": swarm}[args.cmd](args)


if __name__ == "__main__":
    main()
