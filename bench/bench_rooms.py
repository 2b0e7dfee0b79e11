"""Room benchmarks, each beside a baseline measured in the same run.

    python -m bench.bench_rooms [--quick] [--json PATH]

Everything runs in tests/lab.py's namespace lab: ten hosts on one bridge, each running one
`_rooms_driver.py` process with in-process nodes (beacon discovery on the host's eth0, no
mDNS), and a second lab of four hosts split in two halves for the partition figure.

Measured:
  1. a room of 30 members (10 hosts x 3 nodes): a post -> the last member's `message`,
     p50/p99 (posts paced at 20/s); baseline: a direct message to one peer on another
     host -> its `message` (same pacing), and the direct round trip (send -> `delivered`).
  2. 1,000 posts/s into a 10-member room (one node per host) for 30 s: every member must
     have every post (lost, duplicated, out of order are counted); baseline: the same
     rate as broadcasts to the same 9 peers (one outbox row per peer, like the room).
  3. catch-up: 10,000 posts to a member that is offline, from a member that has them
     (the author is offline too by then): from the member's restart to its last
     `message`; baseline: the same 10,000 sent while it is online (first post -> last).
  4. memory: per room (one node joins 200 rooms of its own; Python heap by tracemalloc),
     per member (RSS of the 30-member room's driver processes before and after the room
     filled, per node and remote member); baseline: the same processes' RSS per peer
     session (every node sent one direct message to every other before the room).
  5. a partition heals: the two halves of #heal each post 500 while apart; from the link
     coming back to every member having every post; baseline: 500 direct messages per
     node to a node in the other half, sent in the same partition, until all delivered.
  6. one way into a 10-member room, as fast as `post()` takes them (issue 15, goal 2):
     posts per second each member stores (first post -> every member has the last);
     baselines: the plain Python TLS 1.3 stream of frames of the same size
     (bench/_tls_baseline.py, as in bench_messaging) and direct messages into one member
     through `node.send()`, both in the same run (`--flood-only` runs just this one).
Timings are reported, never asserted.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from typing import Any

from bench.common import (
    Figure,
    Lab,
    finish,
    lab_namespaces_of,
    percentile,
    read_json_line,
    start_py,
    stop_child,
)

FULL = {"latency": 200, "rate": 1000, "seconds": 30, "catchup": 10_000, "rooms": 200,
        "heal": 500, "flood": 10_000}
QUICK = {"latency": 40, "rate": 200, "seconds": 5, "catchup": 1000, "rooms": 50,
         "heal": 100, "flood": 1000}
FAST = {"LANCHAT_HEARTBEAT_S": "0.5", "LANCHAT_DEAD_AFTER_S": "2"}
WAIT_S = 300.0


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


class Driver:
    """One `_rooms_driver` process on a lab host."""

    def __init__(self, lab: Lab, index: int, count: int, env: dict[str, str] | None = None,
                 peers: list[str] | None = None, base: str = "d") -> None:
        host = lab.hosts[index]
        args = ["--base", str(lab.base_dir / f"{base}{index}"), "--count", str(count), "--ip",
                host.ip, "--nick", f"h{index}n"]
        for p in peers or []:
            args += ["--peer", p]
        self.proc: subprocess.Popen[str] = start_py(host, "bench._rooms_driver", *args,
                                                    extra_env=env)
        ready = read_json_line(self.proc, 60, "ready")
        self.ids: list[str] = ready["ids"]
        self.ports: list[int] = ready["ports"]
        self.ip = host.ip

    def ask(self, line: str, timeout: float = WAIT_S + 60) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = read_json_line(self.proc, timeout)
        if answer.get("kind") == "error":
            raise RuntimeError(answer["message"])
        return answer

    def stop(self) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
        except OSError:
            pass
        stop_child(self.proc, 30)


def us(samples: list[float]) -> dict[str, float]:
    ms = [s * 1e6 for s in samples]
    return {"p50": percentile(ms, 50), "p99": percentile(ms, 99), "n": len(ms)}


def collect(drivers: list[Driver], kind: str, author: str, n: int,
            node: int | None = None) -> dict[str, Any]:
    """Per message id, the last arrival over every member on every host (or over node
    `node` of each host)."""
    last: dict[str, float] = {}
    ok, dups, breaks, counts = True, 0, 0, []
    for d in drivers:
        got = d.ask(f"got {kind} {author} {n} {WAIT_S}" + ("" if node is None else f" {node}"))
        ok &= got["ok"]
        dups += got["dups"]
        breaks += got["order_breaks"]
        counts += got["counts"]
        for msg_id, t in got["last"].items():
            last[msg_id] = max(t, last.get(msg_id, 0.0))
    return {"last": last, "ok": ok, "dups": dups, "order_breaks": breaks, "counts": counts}


def big_room(drivers: list[Driver], sizes: dict[str, int]) -> dict[str, Any]:
    """30 members: post -> last member's message; direct one-way and round trip."""
    room = "#big"
    for d in drivers:
        d.ask(f"join {room} 0,1,2")
    members = sum(len(d.ids) for d in drivers)
    for d in drivers:
        assert d.ask(f"members {room} {members} {WAIT_S}")["ok"], "room did not fill"
    log(f"{room}: {members} members")
    filled = [d.ask("rss")["kib"] for d in drivers]
    author, n = drivers[0].ids[0], sizes["latency"]
    drivers[0].ask(f"post {room} 0 20 20 0")  # warm-up: sessions to every member open
    collect(drivers, f"{room}:r", author, 20)
    sends = drivers[0].ask(f"post {room} 0 {n} 20 20")["sends"]
    got = collect(drivers, f"{room}:r", author, 20 + n)
    lat = [got["last"][i] - t for i, t in sends.items()]
    peer = drivers[-1].ids[0]
    dsends = drivers[0].ask(f"direct 0 {peer} {n} 20")["sends"]
    dgot = drivers[-1].ask(f"got direct:d {author} {n} {WAIT_S} 0")
    dlat = [dgot["last"][i] - t for i, t in dsends.items()]
    everyone = sum(len(d.ids) for d in drivers)
    d0 = drivers[0].ask(f"delivered 0 {n} {WAIT_S} {everyone - 1}")  # after open_sessions
    rtt = [t - s for s, t in zip(sorted(dsends.values()), sorted(d0["times"]), strict=False)]
    return {"members": members, "room": us(lat), "direct": us(dlat), "rtt": us(rtt),
            "rss_filled_kib": filled,
            "dups": got["dups"], "order_breaks": got["order_breaks"]}


def rate_room(drivers: list[Driver], sizes: dict[str, int]) -> dict[str, Any]:
    """1,000 posts/s into 10 members; the same as broadcasts to the same 9 peers."""
    room, rate = "#ten", sizes["rate"]
    n = rate * sizes["seconds"]
    for d in drivers:
        d.ask(f"join {room} 0")
    for d in drivers:
        assert d.ask(f"members {room} {len(drivers)} {WAIT_S}")["ok"]
    author = drivers[0].ids[0]
    t0 = time.time()
    sends = drivers[0].ask(f"post {room} 0 {n} {rate}", timeout=WAIT_S + 60)["sends"]
    sent_s = max(sends.values()) - t0
    got = collect(drivers, f"{room}:r", author, n, node=0)
    lags = [got["last"][i] - t for i, t in sends.items() if i in got["last"]]
    lost = sum(max(0, n - c) for c in got["counts"])
    peers = ",".join(d.ids[0] for d in drivers[1:])
    t1 = time.time()
    fsends = drivers[0].ask(f"fan 0 {peers} {n} {rate}", timeout=WAIT_S + 60)["sends"]
    fsent_s = max(fsends.values()) - t1
    fgot = collect(drivers[1:], "direct:f", author, n, node=0)
    flags = [fgot["last"][i] - t for i, t in fsends.items() if i in fgot["last"]]
    flost = sum(max(0, n - c) for c in fgot["counts"])
    return {"n": n, "rate_sent": n / sent_s, "lost": lost, "dups": got["dups"],
            "order_breaks": got["order_breaks"], "lag": us(lags),
            "base_rate_sent": n / fsent_s, "base_lost": flost, "base_lag": us(flags),
            "base_dups": fgot["dups"]}


def catch_up(drivers: list[Driver], sizes: dict[str, int]) -> dict[str, Any]:
    """10,000 posts live to a member; then 10,000 it missed, fetched from a relay."""
    room, n = "#catch", sizes["catchup"]
    a, b, c = drivers[0], drivers[1], drivers[2]
    for d in (a, b, c):
        d.ask(f"join {room} 1")
    for d in (a, b, c):
        assert d.ask(f"members {room} 3 {WAIT_S}")["ok"]
    author = a.ids[1]
    t0 = time.time()
    a.ask(f"post {room} 1 {n} 0 0")
    live = c.ask(f"got {room}:r {author} {n} {WAIT_S} 1")
    live_s = max(live["last"].values()) - t0
    b.ask(f"got {room}:r {author} {n} {WAIT_S} 1")
    c.ask("close 1")
    missed = a.ask(f"post {room} 1 {n} 0 {n}")["sends"]
    b.ask(f"got {room}:r {author} {2 * n} {WAIT_S} 1")
    a.ask("close 1")  # the author is gone: what c missed must come from b
    opened = c.ask("open 1")
    got = c.ask(f"got {room}:r {author} {2 * n} {WAIT_S} 1")
    catch_s = max(got["last"][i] for i in missed) - opened["t"]
    return {"n": n, "live_s": live_s, "catchup_s": catch_s,
            "start_s": opened["ready"] - opened["t"], "ok": got["ok"], "dups": got["dups"],
            "order_breaks": got["order_breaks"]}


def flood_room(drivers: list[Driver], sizes: dict[str, int]) -> dict[str, Any]:
    """Posts into a 10-member room as fast as `post()` takes them: every member's rate;
    the same number of direct messages into one member through `node.send()`."""
    room, n = "#flood", sizes["flood"]
    for d in drivers:
        d.ask(f"join {room} 0")
    for d in drivers:
        assert d.ask(f"members {room} {len(drivers)} {WAIT_S}")["ok"], "room did not fill"
    author = drivers[0].ids[0]
    drivers[0].ask(f"post {room} 0 50 0 0")  # warm-up: every member's session is open
    collect(drivers, f"{room}:r", author, 50, node=0)
    sends = drivers[0].ask(f"post {room} 0 {n} 0 50", timeout=WAIT_S + 60)["sends"]
    got = collect(drivers, f"{room}:r", author, 50 + n, node=0)
    first = min(sends.values())
    room_s = max(got["last"][i] for i in sends) - first
    member = drivers[1]
    dsends = drivers[0].ask(f"direct 0 {member.ids[0]} {n} 0", timeout=WAIT_S + 60)["sends"]
    dgot = member.ask(f"got direct:d {author} {n} {WAIT_S} 0")
    direct_s = max(dgot["last"][i] for i in dsends) - min(dsends.values())
    lost = sum(max(0, 50 + n - c) for c in got["counts"])
    return {"n": n, "members": len(drivers), "room_rate": n / room_s,
            "direct_rate": n / direct_s, "lost": lost, "dups": got["dups"],
            "order_breaks": got["order_breaks"], "ok": got["ok"] and dgot["ok"]}


def tls_stream(lab: Lab, sizes: dict[str, int]) -> float:
    """The plain TLS 1.3 stream's msg/s (bench_messaging's baseline, same frame size)."""
    from bench._rooms_driver import text_for
    from bench.bench_messaging import run_tls_baselines
    from bench.common import chat_frame_size

    frame = chat_frame_size(text_for(0, "r"))
    base = run_tls_baselines(lab, {"rounds": 1, "tls_pingpong": 100,
                                   "stream": 5 * sizes["flood"]}, frame)
    return float(base["tls_stream"]["rate"])


def flood_figures(fl: dict[str, Any], tls_rate: float) -> list[Figure]:
    return [
        Figure(f"one way into a {fl['members']}-member room ({fl['n']:,} posts), msg/s "
               "each member stores", fl["room_rate"], tls_rate, "msg/s", ">= 0.5x",
               better="higher", baseline_name="TLS stream"),
        Figure(f"... beside direct messages into one member ({fl['n']:,}, `node.send()`)",
               fl["room_rate"], fl["direct_rate"], "msg/s", better="higher",
               baseline_name="direct one way"),
        Figure("... direct one way into one member", fl["direct_rate"], tls_rate, "msg/s",
               ">= 0.9x", better="higher", baseline_name="TLS stream"),
        Figure("... room posts lost / duplicated / out of order",
               fl["lost"] + fl["dups"] + fl["order_breaks"], None, "msgs"),
    ]


def open_sessions(drivers: list[Driver]) -> None:
    """Every node sends one direct message to every other: the full mesh of sessions a
    30-member room uses, opened before the room (the memory baseline)."""
    everyone = [i for d in drivers for i in d.ids]
    for d in drivers:
        for k, own in enumerate(d.ids):
            d.ask(f"sessions {k} {','.join(x for x in everyone if x != own)}")
    for d in drivers:
        for k in range(len(d.ids)):
            assert d.ask(f"delivered {k} {len(everyone) - 1} {WAIT_S}")["ok"]


def memory(drivers: list[Driver], idle: list[int], meshed: list[int], filled: list[int],
           sizes: dict[str, int]) -> dict[str, Any]:
    rooms = drivers[3].ask(f"rooms 2 {sizes['rooms']}")
    per_room = (rooms["after"] - rooms["before"]) / sizes["rooms"]
    pairs = 3 * 29  # per process: 3 nodes, each with 29 remote peers, then members
    per_session = [(b - a) / pairs for a, b in zip(idle, meshed, strict=True)]
    per_member = [(b - a) / pairs for a, b in zip(meshed, filled, strict=True)]
    return {"per_room_kib": per_room, "per_member_kib": statistics.median(per_member),
            "per_session_kib": statistics.median(per_session), "rss_idle_kib": idle,
            "rss_meshed_kib": meshed, "rss_filled_kib": filled}


def heal(sizes: dict[str, int]) -> dict[str, Any]:
    """Two halves post while apart; time from the link coming back to all having all."""
    n = sizes["heal"]
    with Lab(4) as lab:
        drivers = [Driver(lab, i, 1, env=FAST) for i in range(4)]
        try:
            for d in drivers:
                d.ask("join #heal 0")
            for d in drivers:
                assert d.ask(f"members #heal 4 {WAIT_S}")["ok"]
            trunk = lab.split(lab.hosts[2:])
            trunk.down()
            for i, d in enumerate(drivers):  # each side has given the other up
                for j in ((2, 3) if i < 2 else (0, 1)):
                    assert d.ask(f"gone 0 {drivers[j].ids[0]} {WAIT_S}")["ok"]
            others = {0: 2, 1: 3, 2: 0, 3: 1}
            for i, d in enumerate(drivers):
                d.ask(f"post #heal 0 {n} 0")
                d.ask(f"direct 0 {drivers[others[i]].ids[0]} {n} 0")
            t = time.time()
            trunk.up()
            room_done, direct_done = 0.0, 0.0
            for d in drivers:
                for author in drivers:
                    if author is d:
                        continue
                    got = d.ask(f"got #heal:r {author.ids[0]} {n} {WAIT_S}")
                    room_done = max(room_done, max(got["last"].values()))
                dl = d.ask(f"delivered 0 {n} {WAIT_S}")
                direct_done = max(direct_done, max(dl["times"]))
            return {"n": n, "room_s": room_done - t, "direct_s": direct_done - t}
        finally:
            for d in drivers:
                d.stop()


def figures(big: dict[str, Any], rate: dict[str, Any], cu: dict[str, Any],
            mem: dict[str, Any], hl: dict[str, Any]) -> list[Figure]:
    return [
        Figure(f"room of {big['members']}: post -> last member, p50", big["room"]["p50"],
               big["direct"]["p50"], "us", baseline_name="direct to one peer"),
        Figure(f"room of {big['members']}: post -> last member, p99", big["room"]["p99"],
               big["direct"]["p99"], "us", baseline_name="direct to one peer"),
        Figure("direct round trip (send -> delivered), p50", big["rtt"]["p50"], None, "us"),
        Figure(f"{rate['n']:,} posts into a 10-member room: rate held", rate["rate_sent"],
               rate["base_rate_sent"], "msg/s", better="higher",
               baseline_name="broadcast to the same 9"),
        Figure("... lost / duplicated / out of order", rate["lost"] + rate["dups"]
               + rate["order_breaks"], rate["base_lost"] + rate["base_dups"], "msgs",
               baseline_name="broadcast"),
        Figure("... post -> last member, p99", rate["lag"]["p99"], rate["base_lag"]["p99"],
               "us", baseline_name="broadcast"),
        Figure(f"catch-up of {cu['n']:,} missed posts from a relay", cu["catchup_s"],
               cu["live_s"], "s", baseline_name="the same sent live"),
        Figure("memory per room (a node in 200 rooms)", mem["per_room_kib"], None, "KiB"),
        Figure("memory per member of a 30-member room", mem["per_member_kib"],
               mem["per_session_kib"], "KiB", baseline_name="per peer session"),
        Figure(f"partition heals -> every member has all ({4 * hl['n']:,} posts)",
               hl["room_s"], hl["direct_s"], "s", baseline_name="direct messages"),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small N (CI); asserts nothing")
    ap.add_argument("--json", default="bench/out/rooms.json", help="where to write JSON")
    ap.add_argument("--flood-only", action="store_true",
                    help="only the one-way flood into a 10-member room and its baselines")
    args = ap.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    started = time.monotonic()
    if args.flood_only:
        return flood_only(args, sizes, started)
    with Lab(10) as lab:
        log(f"lab {lab.prefix} mode={lab.mode} {lab.fallback_reason or ''}")
        prefix = lab.prefix
        drivers = [Driver(lab, i, 3) for i in range(10)]
        try:
            idle = [d.ask("rss")["kib"] for d in drivers]
            open_sessions(drivers)
            meshed = [d.ask("rss")["kib"] for d in drivers]
            big = big_room(drivers, sizes)
            log(f"30-member room: {big}")
            rate = rate_room(drivers, sizes)
            log(f"rate: lost {rate['lost']} dups {rate['dups']} breaks {rate['order_breaks']}")
            cu = catch_up(drivers, sizes)
            log(f"catch-up: {cu}")
            mem = memory(drivers, idle, meshed, big["rss_filled_kib"], sizes)
        finally:
            for d in drivers:
                d.stop()
        fl, tls_rate = flood_lab(lab, sizes)
        log(f"flood: {fl}, TLS stream {tls_rate:,.0f} msg/s")
    hl = heal(sizes)
    log(f"heal: {hl}")
    left = lab_namespaces_of(prefix)
    notes = [
        "ratio = lanchat / baseline; every post is signed by its author (Ed25519) and "
        "verified by every member; one outbox row per member",
        f"30-member room: direct round trip p99 {big['rtt']['p99']:.0f} µs; room posts "
        f"duplicated {big['dups']}, out of order {big['order_breaks']}",
        f"10-member room at {sizes['rate']}/s: lost {rate['lost']}, duplicated "
        f"{rate['dups']}, out of order {rate['order_breaks']}; p50 post -> last member "
        f"{rate['lag']['p50']:.0f} µs (broadcast {rate['base_lag']['p50']:.0f} µs)",
        f"catch-up: the member's own start to ready {cu['start_s']:.2f} s is included; "
        f"duplicates {cu['dups']}, out of order {cu['order_breaks']}",
    ]
    return finish("Rooms", quick=args.quick, elapsed=time.monotonic() - started,
                  figures=figures(big, rate, cu, mem, hl) + flood_figures(fl, tls_rate),
                  notes=notes, left=left, json_path=args.json,
                  result={"sizes": sizes, "big": big, "rate": rate, "catchup": cu,
                          "memory": mem, "heal": hl, "flood": fl, "tls_stream": tls_rate})


def flood_lab(lab: Lab, sizes: dict[str, int]) -> tuple[dict[str, Any], float]:
    """The flood into a 10-member room with one fresh node per host, and the TLS stream."""
    drivers = [Driver(lab, i, 1, base="flood") for i in range(10)]
    try:
        fl = flood_room(drivers, sizes)
    finally:
        for d in drivers:
            d.stop()
    return fl, tls_stream(lab, sizes)


def flood_only(args: argparse.Namespace, sizes: dict[str, int], started: float) -> int:
    with Lab(10) as lab:
        log(f"lab {lab.prefix} mode={lab.mode} {lab.fallback_reason or ''}")
        prefix = lab.prefix
        fl, tls_rate = flood_lab(lab, sizes)
    log(f"flood: {fl}, TLS stream {tls_rate:,.0f} msg/s")
    notes = ["ratio = lanchat / baseline; each post is signed by its author and verified "
             "and stored by every member before its ack; one outbox row per member",
             f"every member had every post: {fl['ok']}"]
    return finish("Rooms: one way into a 10-member room", quick=args.quick,
                  elapsed=time.monotonic() - started, figures=flood_figures(fl, tls_rate),
                  notes=notes, left=lab_namespaces_of(prefix), json_path=args.json,
                  result={"sizes": sizes, "flood": fl, "tls_stream": tls_rate})


if __name__ == "__main__":
    raise SystemExit(main())
