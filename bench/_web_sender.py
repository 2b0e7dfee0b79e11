"""A sending node for bench_web.py (inside a lab namespace): broadcasts at a given rate.

    python -m bench._web_sender --home H --nick alice --ip IP --peer IP:PORT

Prints {"kind": "ready"} once the peer is connected; then reads one JSON command per
line on stdin: {"op": "send", "count": N, "rate": R, "prefix": P} sends N broadcasts
of "P <i> <unix time>" at R per second and prints {"kind": "sent", "count": N,
"seconds": S, "delivered": D} once the peer acked them all.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

from lanchat.config import Config
from lanchat.events import Event
from lanchat.node import Node

SEND_BATCH_S = 0.005  # pacing step: what is due is sent every 5 ms


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", required=True)
    ap.add_argument("--nick", default="alice")
    ap.add_argument("--ip", required=True)
    ap.add_argument("--peer", required=True)
    args = ap.parse_args()
    node = Node(Config(home=Path(args.home), nick=args.nick, port=0, interfaces=[args.ip],
                       peers=[args.peer], mdns=False, beacon=False))
    cond = threading.Condition()
    state = {"connected": False, "delivered": 0}

    def on_event(ev: Event) -> None:
        with cond:
            if ev.name in ("peer_joined", "peer_updated") and ev["peer"].get("connected"):
                state["connected"] = True
            elif ev.name == "delivered":
                state["delivered"] += 1
            cond.notify_all()

    node.subscribe(on_event)
    node.start()
    try:
        with cond:
            cond.wait_for(lambda: state["connected"], timeout=30)
        print(json.dumps({"kind": "ready", "connected": state["connected"]}), flush=True)
        for line in sys.stdin:
            cmd = json.loads(line)
            count, rate, prefix = int(cmd["count"]), float(cmd["rate"]), str(cmd["prefix"])
            with cond:
                base = state["delivered"]
            start = time.monotonic()
            i = 0
            while i < count:
                due = min(count, int((time.monotonic() - start) * rate) + 1)
                while i < due:
                    node.broadcast(f"{prefix} {i} {time.time():.6f}")
                    i += 1
                time.sleep(SEND_BATCH_S)
            seconds = time.monotonic() - start
            target = base + count
            with cond:
                cond.wait_for(lambda: state["delivered"] >= target, timeout=120)  # noqa: B023
                delivered = state["delivered"] - base
            print(json.dumps({"kind": "sent", "count": count, "seconds": seconds,
                              "delivered": delivered}), flush=True)
    finally:
        node.close()


if __name__ == "__main__":
    main()
