"""How long a session's heartbeat or ack waits while the user runs /search or /list.

    python -m bench.bench_stall                 # this tree vs main's code before issue 17
    python -m bench.bench_stall --base REV      # vs another commit
    python -m bench.bench_stall --quick         # 20,000 messages, 200 peers

Two in-process nodes on 127.0.0.1 (no discovery; the sockets never leave loopback): bob
has a history of N messages (not yet in the search index) and P known peers; alice sends
bob a probe message every 20 ms and times each one to its `delivered` event (bob's
commit and ack). Meanwhile bob runs one `/search` (`node.search`), then `/list`
(`node.peers()`) ten times, on the calling thread as the shell does. Figures: the worst
probe round trip and the worst lateness of a 5 ms timer on bob's loop (a session's
heartbeat timer runs there) during each operation, beside the same run's idle figures.

Each code version runs in its own process with PYTHONPATH pointing at its tree; the base
tree is a temporary `git worktree` of `--base`, removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

PROBE_EVERY_S = 0.02  # one probe message from alice to bob this often
TICK_S = 0.005  # the timer on bob's loop whose lateness is measured
IDLE_S = 1.0
LISTS = 10
DEFAULT_BASE = "1654d6a"  # main before issue 17 (the node split and the store readers)


# --------------------------------------------------------------------------- worker


def _worker(messages: int, peers: int) -> dict[str, Any]:
    """Runs with the lanchat of PYTHONPATH; prints one JSON line of figures."""
    import secrets

    from lanchat.config import Config
    from lanchat.node import Node
    from lanchat.protocol import Chat
    from lanchat.store import Store

    root = Path(tempfile.mkdtemp(prefix="lcstall-"))
    bob_home = root / "bob"
    bob_home.mkdir()
    store = Store(bob_home / "lanchat.db")
    sender = "b" * 52
    try:  # the store's incoming rows: (peer, Chat) before issue 12, Received after
        from lanchat.store import Received

        def row(chat: Chat) -> Any:
            return Received(sender, "b", chat.ts, chat)
    except ImportError:
        def row(chat: Chat) -> Any:
            return (sender, chat)
    batch: list[Any] = []
    for i in range(messages):
        batch.append(row(Chat(f"{i:032x}", float(i), f"message {i} about topic{i % 1000}"
                              f" and word{i % 97} with some more text to index")))
        if len(batch) == 5000:
            store.commit_batch(batch, [])
            batch = []
    if batch:
        store.commit_batch(batch, [])
    # the peer store is `Store.peers` now; the base commit has `Store.remember_peer`
    remember = store.peers.remember if hasattr(store, "peers") else store.remember_peer
    for _ in range(peers):
        pid = secrets.token_hex(26)[:52]
        remember(pid, f"peer{pid[:6]}", "", ["10.0.0.1"], 7000)
    store.close()

    def config(home: Path, nick: str, peer: list[str]) -> Config:
        return Config(home=home, nick=nick, port=0, interfaces=["127.0.0.1"], peers=peer,
                      mdns=False, beacon=False)

    bob = Node(config(bob_home, "bob", []))
    bob.start()
    alice = Node(config(root / "alice", "alice", [f"127.0.0.1:{bob.port}"]))
    sent: dict[str, float] = {}
    rtts: list[tuple[float, float]] = []  # (sent, delivered) monotonic
    joined = threading.Event()
    lock = threading.Lock()

    def on_alice(event: Any) -> None:
        if event.name == "peer_joined" and event["peer"]["id"] == bob.node_id:
            joined.set()
        elif event.name == "delivered":
            with lock:
                t0 = sent.pop(event["id"], None)
            if t0 is not None:
                rtts.append((t0, time.monotonic()))

    alice.subscribe(on_alice)
    alice.start()
    if not joined.wait(20):
        raise SystemExit("alice never reached bob")
    loop = getattr(bob, "_loop", None) or bob.runtime.loop  # before / after issue 17
    ticks: list[tuple[float, float]] = []  # (when, lateness)

    def start_ticks() -> None:
        due = loop.time() + TICK_S

        def tick() -> None:
            nonlocal due
            now = loop.time()
            ticks.append((time.monotonic(), now - due))
            due = now + TICK_S
            if running:
                loop.call_at(due, tick)

        loop.call_at(due, tick)

    running = True
    loop.call_soon_threadsafe(start_ticks)
    stop = threading.Event()

    def probe() -> None:
        i = 0
        while not stop.wait(PROBE_EVERY_S):
            t0 = time.monotonic()
            with lock:
                msg_id = alice.send(bob.node_id, f"probe {i}")
                sent[msg_id] = t0
            i += 1

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    windows: dict[str, tuple[float, float]] = {}
    t = time.monotonic()
    time.sleep(IDLE_S)
    windows["idle"] = (t, time.monotonic())
    t = time.monotonic()
    found = bob.search("word42 topic42")
    windows["search"] = (t, time.monotonic())
    list_times = []
    t = time.monotonic()
    for _ in range(LISTS):
        t1 = time.monotonic()
        listed = bob.peers()
        list_times.append(time.monotonic() - t1)
    windows["list"] = (t, time.monotonic())
    time.sleep(0.5)  # let the probes sent during the last window arrive
    stop.set()
    prober.join()
    running = False
    out: dict[str, Any] = {"messages": messages, "peers": len(listed), "found": len(found),
                           "list_each_ms": round(1000 * max(list_times), 2)}
    for name, (a, b) in windows.items():
        # a probe counts for the window it was sent in, a timer for the one it was due in
        overlapping = [d - s for s, d in rtts if a <= s <= b]
        lags = [lag for when, lag in ticks if a <= when - lag <= b]
        out[name] = {"duration_ms": round(1000 * (b - a), 1),
                     "probes": len(overlapping),
                     "ack_max_ms": round(1000 * max(overlapping, default=0.0), 1),
                     "ack_median_ms": round(1000 * sorted(overlapping)[len(overlapping) // 2],
                                            1) if overlapping else None,
                     "loop_lag_max_ms": round(1000 * max(lags, default=0.0), 1)}
    alice.close()
    bob.close()
    import shutil

    shutil.rmtree(root, ignore_errors=True)
    return out


# --------------------------------------------------------------------------- orchestrator


def _run_tree(tree: Path, messages: int, peers: int) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker",
                           "--messages", str(messages), "--peers", str(peers)],
                          capture_output=True, text=True, env=env, cwd=tempfile.gettempdir(),
                          timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"worker for {tree} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    """Run both trees and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--messages", type=int, default=None)
    parser.add_argument("--peers", type=int, default=None)
    parser.add_argument("--base", default=DEFAULT_BASE, help="commit to compare against")
    parser.add_argument("--json", default="bench/out/stall.json")
    args = parser.parse_args()
    messages = args.messages or (20_000 if args.quick else 100_000)
    peers = args.peers or (200 if args.quick else 1_000)
    if args.worker:
        print(json.dumps(_worker(messages, peers)))
        return 0

    from bench.common import REPO_ROOT, Figure, finish

    started = time.monotonic()
    base_tree = Path(tempfile.mkdtemp(prefix="lcstall-base-"))
    subprocess.run(["git", "-C", str(REPO_ROOT), "worktree", "add", "--detach", "-q",
                    str(base_tree), args.base], check=True)
    try:
        base = _run_tree(base_tree, messages, peers)
        this = _run_tree(REPO_ROOT, messages, peers)
    finally:
        subprocess.run(["git", "-C", str(REPO_ROOT), "worktree", "remove", "--force",
                        str(base_tree)], check=False)
    figures = []
    for phase, label in (("idle", "idle"), ("search", f"/search on {messages:,} messages"),
                         ("list", f"/list x{LISTS} with {peers:,} peers")):
        for key, what in (("ack_max_ms", "worst ack round trip"),
                          ("loop_lag_max_ms", "worst heartbeat-timer lateness")):
            figures.append(Figure(f"{what}, {label}", this[phase][key], base[phase][key],
                                  "ms", baseline_name=f"before, {args.base}"))
        figures.append(Figure(f"{label}: duration", this[phase]["duration_ms"],
                              base[phase]["duration_ms"], "ms",
                              baseline_name=f"before, {args.base}"))
    notes = [f"probes every {PROBE_EVERY_S * 1000:.0f} ms from alice to bob; timer every "
             f"{TICK_S * 1000:.0f} ms on bob's loop; both nodes in one process on 127.0.0.1",
             f"search hits: {this['found']} (before: {base['found']}); one /list: "
             f"{this['list_each_ms']} ms (before: {base['list_each_ms']} ms)"]
    return finish("Stalls: heartbeats and acks during /search and /list", quick=args.quick,
                  elapsed=time.monotonic() - started, figures=figures, notes=notes, left=[],
                  json_path=args.json, result={"this": this, "base": base,
                                               "base_rev": args.base})


if __name__ == "__main__":
    sys.exit(main())
