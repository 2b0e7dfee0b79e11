"""Discovery benchmarks: join, leave, crash, convergence and idle cost; each beside a baseline.

    python -m bench.bench_discovery [--quick] [--json PATH]

Everything runs in tests/lab.py's namespace lab (hosts on one bridge, veth links,
10.77.x.0/24; multicast only inside it), never on the machine's real interface. Without
namespaces (not root) the benchmark refuses to run: discovery needs the lab's multicast
routes, and loopback mode would not measure the same thing.

Measured, in one run:
  1. join: a node's `ready` event (its ts) -> `peer_joined` of that node at a watcher
     (ts; all namespaces share one clock), with the beacon alone (`--no-mdns`) and with
     mDNS alone (`--no-beacon`), one fresh node (new home, new id) at a time.
     Baselines: raw one-way multicast datagram latency between the same two namespaces
     (bench/_disc_mcast.py); bare python-zeroconf register -> browser `Added` between the
     same two namespaces (bench/_disc_zc.py; DESIGN.md: ~1.2 s of probing).
  2. leave: `/quit` written (or SIGTERM sent) -> the watcher's `peer_left` reason bye;
     crash: SIGKILL, and the host's link taken down (lab.link_down) -> `peer_left`
     reason timeout. Default sources (beacon and mDNS); the per-source `/quit` figures
     come from the join runs.
  3. convergence: N nodes (hosts x nodes per host) started at once; time from the first
     launch until every node has N-1 distinct `peer_joined`. Baseline: first launch ->
     last `ready` (start-up alone).
  4. idle cost: CPU (utime+stime from /proc/<pid>/stat, % of one core) and packets per
     second on the node's namespace (/proc/<pid>/net/dev, eth0) of an idle node with one
     peer, and CPU of every node in the converged N-node LAN; baseline: an idle
     `python3 -c "import time; time.sleep(...)"` in a namespace of its own.

Timings are reported, never asserted (--quick asserts nothing either).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import (
    Figure,
    Host,
    Lab,
    finish,
    lab_namespaces_of,
    percentile,
    start_py,
    stop_child,
)

FULL: dict[str, Any] = {"mcast": 300, "zc": 6, "joins": 20, "quit": 10, "term": 10, "kill": 6,
        "linkdown": 6, "conv_hosts": 10, "conv_per_host": 3, "idle_s": 20.0}
QUICK: dict[str, Any] = {"mcast": 50, "zc": 2, "joins": 4, "quit": 3, "term": 3, "kill": 2,
         "linkdown": 2, "conv_hosts": 5, "conv_per_host": 2, "idle_s": 4.0}

BEACON_ONLY = ("--no-mdns",)
MDNS_ONLY = ("--no-beacon",)
CLK_TCK = os.sysconf("SC_CLK_TCK")
MDNS_SETTLE_S = 1.0


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def stats_ms(samples_s: list[float]) -> dict[str, Any]:
    """n, min, p50, p90, max in milliseconds."""
    if not samples_s:
        return {"n": 0, "min_ms": None, "p50_ms": None, "p90_ms": None, "max_ms": None}
    return {"n": len(samples_s),
            "min_ms": round(min(samples_s) * 1e3, 3),
            "p50_ms": round(percentile(samples_s, 50) * 1e3, 3),
            "p90_ms": round(percentile(samples_s, 90) * 1e3, 3),
            "max_ms": round(max(samples_s) * 1e3, 3)}


class DFigure(Figure):
    """A Figure whose ratio is n/a when either side is not positive (a join can be seen
    before the joiner's own `ready`, which makes the lanchat figure negative)."""

    @property
    def ratio(self) -> float | None:
        if self.lanchat is None or self.baseline is None:
            return None
        if self.lanchat <= 0 or self.baseline <= 0:
            return None
        return self.lanchat / self.baseline


# --------------------------------------------------------------------------- /proc


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process (all threads), in clock ticks."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of stat(5)


def net_packets(pid: int, dev: str = "eth0") -> tuple[int, int]:
    """(rx, tx) packet counters of `dev` in the network namespace of `pid`."""
    for line in Path(f"/proc/{pid}/net/dev").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name.strip() == dev:
            f = rest.split()
            return int(f[1]), int(f[9])
    raise RuntimeError(f"no {dev} in the namespace of pid {pid}")


class Lines:
    """JSON lines of a helper's stdout, read by a thread. (bench.common.read_json_line
    select()s on the pipe and then readline()s, so lines that arrive together wait in the
    file object's buffer where select() cannot see them.)"""

    def __init__(self, proc: Any) -> None:
        self.proc = proc
        self.items: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._eof = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            line = line.strip()
            if line.startswith("{"):
                with self._cond:
                    self.items.append(json.loads(line))
                    self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def wait(self, kind: str, timeout: float, count: int = 1) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [o for o in self.items if o.get("kind") == kind]
                if len(got) >= count:
                    return got
                left = deadline - time.monotonic()
                if left <= 0 or self._eof:
                    raise TimeoutError(f"{count} x {kind} not seen from pid {self.proc.pid}")
                self._cond.wait(left)


def sleeper(host: Host, seconds: int = 600) -> Any:
    """An idle `python3 -c "import time; time.sleep(...)"` in `host` (the CPU baseline)."""
    return host.popen([sys.executable, "-c", f"import time; time.sleep({seconds})"])


# --------------------------------------------------------------------------- baselines


def mcast_baseline(lab: Lab, n: int) -> dict[str, Any]:
    h1, h2 = lab.hosts[:2]
    rx = start_py(h1, "bench._disc_mcast", "recv", "--ip", h1.ip, "--n", str(n))
    try:
        rx_lines = Lines(rx)
        rx_lines.wait("ready", 20)
        tx = start_py(h2, "bench._disc_mcast", "send", "--ip", h2.ip, "--n", str(n))
        try:
            Lines(tx).wait("done", 60)
        finally:
            stop_child(tx)
        res = rx_lines.wait("result", 20)[0]
    finally:
        stop_child(rx)
    out = stats_ms(res["samples_s"])
    out["sent"] = n
    log(f"raw multicast one-way: p50 {out['p50_ms']} ms, max {out['max_ms']} ms "
        f"({out['n']}/{n} received)")
    return out


def zeroconf_baseline(lab: Lab, n: int) -> dict[str, Any]:
    h1, h2 = lab.hosts[:2]
    browser = start_py(h1, "bench._disc_zc", "browse", "--ip", h1.ip)
    try:
        seen = Lines(browser)
        seen.wait("ready", 20)
        reg = start_py(h2, "bench._disc_zc", "register", "--ip", h2.ip, "--n", str(n))
        try:
            samples: list[dict[str, Any]] = Lines(reg).wait("sample", 30.0 * n, n)
        finally:
            stop_child(reg)
        try:
            seen.wait("removed", 3.0, n)
        except TimeoutError:
            pass
        events = list(seen.items)
    finally:
        stop_child(browser)
    added = {e["name"]: e["ts"] for e in events if e["kind"] == "added"}
    removed = {e["name"]: e["ts"] for e in events if e["kind"] == "removed"}
    seen_s = [added[s["name"]] - s["register_t0"] for s in samples if s["name"] in added]
    gone = [removed[s["name"]] - s["unregister_t0"] for s in samples if s["name"] in removed]
    blocks = [s["register_returned"] - s["register_t0"] for s in samples]
    out: dict[str, Any] = {"register_to_added": stats_ms(seen_s),
                           "unregister_to_removed": stats_ms(gone),
                           "register_call": stats_ms(blocks), "samples": samples}
    log(f"bare zeroconf: register -> Added p50 {out['register_to_added']['p50_ms']} ms; "
        f"unregister -> Removed p50 {out['unregister_to_removed']['p50_ms']} ms; "
        f"register_service() blocks p50 {out['register_call']['p50_ms']} ms")
    return out


# --------------------------------------------------------------------------- joins


def joins(lab: Lab, sources: tuple[str, ...], n: int, tag: str) -> dict[str, Any]:
    """n fresh nodes, one at a time, on h2; the watcher on h1. Each one then `/quit`s."""
    h1, h2 = lab.hosts[:2]
    watcher = h1.start_node(*sources, nick=f"w{tag}", port=0,
                            home=lab.base_dir / f"w-{tag}")
    watcher.wait_event("ready", timeout=30)
    join, from_launch, start, leave, reasons, exits = [], [], [], [], [], []
    try:
        for i in range(n):
            t_launch = time.time()
            node = h2.start_node(*sources, nick=f"{tag}{i}", port=0,
                                 home=lab.base_dir / f"j-{tag}-{i}")
            ready = node.wait_event("ready", timeout=30)
            seen = watcher.wait_event("peer_joined", timeout=15, peer={"id": ready["id"]})
            join.append(seen["ts"] - ready["ts"])
            from_launch.append(seen["ts"] - t_launch)
            start.append(ready["ts"] - t_launch)
            if "--no-beacon" in sources:
                # past register_service() (~1.6 s after start): a /quit during it waits
                # for it to finish before the goodbye (Discovery.stop)
                time.sleep(MDNS_SETTLE_S)
            t_quit = time.time()
            node.command("/quit")
            left = watcher.wait_event("peer_left", timeout=15, peer={"id": ready["id"]})
            leave.append(left["ts"] - t_quit)
            reasons.append(left["reason"])
            node.wait_exit(15)
            exits.append(time.time() - t_quit)
    finally:
        watcher.stop()
    out: dict[str, Any] = {"sources": list(sources), "join": stats_ms(join), "launch_to_join":
           stats_ms(from_launch), "launch_to_ready": stats_ms(start),
           "quit_to_left": stats_ms(leave), "quit_to_exit": stats_ms(exits),
           "left_reasons": sorted(set(reasons)), "join_samples_s": join,
           "leave_samples_s": leave}
    log(f"joins {tag} ({' '.join(sources)}): ready -> peer_joined p50 "
        f"{out['join']['p50_ms']} ms, max {out['join']['max_ms']} ms; launch -> joined p50 "
        f"{out['launch_to_join']['p50_ms']} ms; /quit -> peer_left p50 "
        f"{out['quit_to_left']['p50_ms']} ms ({','.join(out['left_reasons'])})")
    return out


# --------------------------------------------------------------------------- leave / crash


def leave_and_crash(lab: Lab, sizes: dict[str, Any]) -> dict[str, Any]:
    """Default sources. Every victim on a host of its own; the watcher on h1."""
    h1 = lab.hosts[0]
    kinds = (["quit"] * sizes["quit"] + ["term"] * sizes["term"] + ["kill"] * sizes["kill"]
             + ["linkdown"] * sizes["linkdown"])
    watcher = h1.start_node(nick="watch", port=0, home=lab.base_dir / "watch")
    watcher.wait_event("ready", timeout=30)
    victims = []
    for i, kind in enumerate(kinds):
        host = lab.hosts[1 + i]
        victims.append((kind, host, host.start_node(nick=f"v{kind}{i}", port=0,
                                                    home=lab.base_dir / f"v-{i}")))
    ids = {}
    for _kind, _host, node in victims:
        ids[node.pid] = node.wait_event("ready", timeout=30)["id"]
        watcher.wait_event("peer_joined", timeout=15, peer={"id": ids[node.pid]})
    time.sleep(2.5)  # let mDNS registration finish: each peer is then known by both sources
    via = {tuple(p["via"]) for p in _list(watcher)}
    acted: dict[str, float] = {}  # victim id -> when it was stopped, killed or cut off
    res: dict[str, list[float]] = {k: [] for k in ("quit", "term", "kill", "linkdown")}
    reasons: dict[str, list[str]] = {k: [] for k in res}
    try:
        for kind, _host, node in victims:
            if kind not in ("quit", "term"):
                continue
            mark = watcher.mark()
            t0 = time.time()
            if kind == "quit":
                node.command("/quit")
            else:
                node.kill(signal.SIGTERM)
            left = watcher.wait_event("peer_left", timeout=15, since=mark,
                                      peer={"id": ids[node.pid]})
            acted[ids[node.pid]] = t0
            res[kind].append(left["ts"] - t0)
            reasons[kind].append(left["reason"])
            node.wait_exit(15)
            time.sleep(0.1)
        # crashes: staggered (0.37 s apart, not a multiple of the heartbeat), detected in
        # parallel
        crash_mark = watcher.mark()
        crash_t0: dict[int, tuple[str, float]] = {}
        for kind, host, node in victims:
            if kind == "kill":
                crash_t0[node.pid] = (kind, time.time())
                acted[ids[node.pid]] = crash_t0[node.pid][1]
                node.kill(signal.SIGKILL)
            elif kind == "linkdown":
                crash_t0[node.pid] = (kind, time.time())
                acted[ids[node.pid]] = crash_t0[node.pid][1]
                lab.link_down(host)
            else:
                continue
            time.sleep(0.37)
        for kind, _host, node in victims:
            if node.pid not in crash_t0:
                continue
            left = watcher.wait_event("peer_left", timeout=20, since=crash_mark,
                                      peer={"id": ids[node.pid]})
            res[kind].append(left["ts"] - crash_t0[node.pid][1])
            reasons[kind].append(left["reason"])
    finally:
        for kind, host, node in victims:
            if node.alive:
                node.kill(signal.SIGKILL)
                node.wait_exit(10)
            if kind == "linkdown":
                lab.link_up(host)
        watcher.stop()
    # a peer reported gone (timeout) while it was alive and connected: a false crash
    false_left = [e for e in watcher.events_named("peer_left")
                  if e["ts"] < acted.get(e["peer"]["id"], float("inf"))]
    launched_at = min(v.started_at for _k, _h, v in victims)
    out: dict[str, Any] = {k: stats_ms(v) for k, v in res.items()}
    out["false_left"] = len(false_left)
    out["false_left_peers"] = len({e["peer"]["id"] for e in false_left})
    out["false_left_after_launch_s"] = sorted(
        round(e["ts"] - (time.time() - (time.monotonic() - launched_at)), 2)
        for e in false_left)
    out["victims"] = len(victims)
    out["reasons"] = {k: sorted(set(v)) for k, v in reasons.items()}
    out["via_at_watcher"] = sorted(list(v) for v in via)
    out["samples_s"] = res
    log(f"leave/crash: {out['false_left']} peer_left events for {out['false_left_peers']} "
        f"live peers (of {len(victims)}), at {out['false_left_after_launch_s']} s after launch")
    log("leave/crash (default sources): " + "; ".join(
        f"{k} p50 {out[k]['p50_ms']} ms max {out[k]['max_ms']} ms ({','.join(out['reasons'][k])})"
        for k in res))
    return out


def _list(node: Any) -> list[dict[str, Any]]:
    node.command("/list")
    return node.wait_event("output", timeout=10, command="/list")["data"] or []


def _doctor_sent(node: Any) -> int:
    node.command("/doctor")
    data = node.wait_event("output", timeout=15, command="/doctor")["data"]
    return sum(i.get("beacons_sent", 0) for i in data.get("interfaces", []))


# --------------------------------------------------------------------------- idle


def idle_pair(lab: Lab, seconds: float) -> dict[str, Any]:
    """One idle node with one peer (default sources), beside an idle sleeping python."""
    h1, h2, h3 = lab.hosts[:3]
    a = h1.start_node(nick="idleA", port=0, home=lab.base_dir / "idleA")
    b = h2.start_node(nick="idleB", port=0, home=lab.base_dir / "idleB")
    sl = sleeper(h3)
    try:
        a.wait_event("ready", timeout=30)
        b.wait_event("ready", timeout=30)
        a.wait_event("peer_joined", timeout=15)
        time.sleep(2.5)  # past the start burst and mDNS probing/announcing
        sent0 = _doctor_sent(a)
        c0 = {p: cpu_ticks(p) for p in (a.pid, b.pid, sl.pid)}
        n0 = {p: net_packets(p) for p in (a.pid, sl.pid)}
        t0 = time.monotonic()
        time.sleep(seconds)
        dt = time.monotonic() - t0
        c1 = {p: cpu_ticks(p) for p in (a.pid, b.pid, sl.pid)}
        n1 = {p: net_packets(p) for p in (a.pid, sl.pid)}
        sent1 = _doctor_sent(a)
    finally:
        a.stop()
        b.stop()
        sl.kill()
        sl.wait(5)

    def pct(p: int) -> float:
        return (c1[p] - c0[p]) / CLK_TCK / dt * 100.0

    def pps(p: int, k: int) -> float:
        return (n1[p][k] - n0[p][k]) / dt

    out = {"seconds": round(dt, 2), "cpu_pct": pct(a.pid), "cpu_pct_peer": pct(b.pid),
           "cpu_pct_sleep": pct(sl.pid), "rx_pps": pps(a.pid, 0), "tx_pps": pps(a.pid, 1),
           "sleep_ns_rx_pps": pps(sl.pid, 0), "sleep_ns_tx_pps": pps(sl.pid, 1),
           "beacons_sent_ps": (sent1 - sent0) / dt}
    log(f"idle pair over {dt:.1f} s: CPU {out['cpu_pct']:.2f} % (peer {out['cpu_pct_peer']:.2f}"
        f" %, sleep {out['cpu_pct_sleep']:.2f} %); eth0 tx {out['tx_pps']:.2f} pkt/s "
        f"(beacons {out['beacons_sent_ps']:.2f}/s), rx {out['rx_pps']:.2f} pkt/s; sleeper's "
        f"namespace tx {out['sleep_ns_tx_pps']:.2f} rx {out['sleep_ns_rx_pps']:.2f} pkt/s")
    return out


# --------------------------------------------------------------------------- convergence


def convergence(lab: Lab, hosts: int, per_host: int, idle_s: float) -> dict[str, Any]:
    """hosts x per_host nodes (default sources) started at once; then their idle cost."""
    total = hosts * per_host
    sl = sleeper(lab.hosts[hosts]) if len(lab.hosts) > hosts else None
    nodes = []
    t0 = time.time()
    for k in range(per_host):
        for h in lab.hosts[:hosts]:
            nodes.append(h.start_node(nick=f"c{h.index}x{k}", port=0,
                                      home=lab.base_dir / f"c-{h.index}-{k}"))
    launched = time.time() - t0
    try:
        readies = [n.wait_event("ready", timeout=60) for n in nodes]
        done_ts = []
        for n in nodes:
            distinct: dict[str, float] = {}

            def count(ev: dict[str, Any], seen: dict[str, float] = distinct) -> bool:
                seen.setdefault(ev["peer"]["id"], ev["ts"])
                return len(seen) >= total - 1

            n.wait_count("peer_joined", 1, timeout=60, pred=count)
            done_ts.append(max(distinct.values()))
        via = [tuple(e["peer"]["via"]) for n in nodes for e in n.events_named("peer_joined")]
        left = sum(len(n.events_named("peer_left")) for n in nodes)
        time.sleep(2.0)
        c0 = {n.pid: cpu_ticks(n.pid) for n in nodes}
        s0 = cpu_ticks(sl.pid) if sl else 0
        p0 = net_packets(nodes[0].pid)
        ts0 = time.monotonic()
        time.sleep(idle_s)
        dt = time.monotonic() - ts0
        c1 = {n.pid: cpu_ticks(n.pid) for n in nodes}
        s1 = cpu_ticks(sl.pid) if sl else 0
        p1 = net_packets(nodes[0].pid)
        left_idle = sum(len(n.events_named("peer_left")) for n in nodes) - left
    finally:
        for n in nodes:  # close quickly: SIGTERM all (goodbyes), then reap
            if n.alive:
                n.kill(signal.SIGTERM)
        for n in nodes:
            try:
                n.wait_exit(10)
            except AssertionError:
                n.kill(signal.SIGKILL)
        if sl is not None:
            sl.kill()
            sl.wait(5)
    cpu = sorted((c1[p] - c0[p]) / CLK_TCK / dt * 100.0 for p in c0)
    ready_ts = [r["ts"] for r in readies]
    out = {"nodes": total, "hosts": hosts, "per_host": per_host,
           "launch_s": round(launched, 3),
           "to_last_ready_s": max(ready_ts) - t0, "to_first_ready_s": min(ready_ts) - t0,
           "to_converged_s": max(done_ts) - t0,
           "last_ready_to_converged_s": max(done_ts) - max(ready_ts),
           "per_node_ready_to_all_seen_s": stats_ms(
               [d - r for d, r in zip(done_ts, ready_ts, strict=True)]),
           "via_counts": {",".join(v): via.count(v) for v in set(via)},
           "peer_left_during_run": left, "peer_left_while_idle": left_idle,
           "idle_s": round(dt, 2), "cpu_pct_mean": sum(cpu) / len(cpu),
           "cpu_pct_max": cpu[-1], "cpu_pct_min": cpu[0],
           "cpu_pct_sleep": (s1 - s0) / CLK_TCK / dt * 100.0 if sl else None,
           "host_rx_pps": (p1[0] - p0[0]) / dt, "host_tx_pps": (p1[1] - p0[1]) / dt}
    log(f"convergence {total} nodes ({hosts} hosts x {per_host}): last ready "
        f"{out['to_last_ready_s']:.2f} s, converged {out['to_converged_s']:.2f} s after the "
        f"first launch; idle CPU per node mean {out['cpu_pct_mean']:.2f} % max "
        f"{out['cpu_pct_max']:.2f} %; one host ({per_host} nodes) rx {out['host_rx_pps']:.1f} "
        f"tx {out['host_tx_pps']:.1f} pkt/s")
    return out


# --------------------------------------------------------------------------- report


def figures(r: dict[str, Any]) -> list[DFigure]:
    mc, zc = r["mcast"], r["zeroconf"]
    jb, jm, lc = r["join_beacon"], r["join_mdns"], r["leave_crash"]
    conv, idle = r["convergence"], r["idle_pair"]
    zc_add, zc_rm = zc["register_to_added"], zc["unregister_to_removed"]
    n_j = jb["join"]["n"]
    figs = [
        DFigure(f"join, beacon only: `ready` -> `peer_joined` p50 (n={n_j})",
                jb["join"]["p50_ms"], mc["p50_ms"], "ms", "<= 200 ms",
                baseline_name="raw multicast one-way p50"),
        DFigure("join, beacon only: max", jb["join"]["max_ms"], mc["max_ms"], "ms",
                "<= 200 ms", baseline_name="raw multicast one-way max"),
        DFigure("join, beacon only: process launch -> `peer_joined` p50",
                jb["launch_to_join"]["p50_ms"], jb["launch_to_ready"]["p50_ms"], "ms", "",
                baseline_name="launch -> own `ready` p50"),
        DFigure(f"join, mDNS only: `ready` -> `peer_joined` p50 (n={jm['join']['n']})",
                jm["join"]["p50_ms"], zc_add["p50_ms"], "ms", "<= 200 ms",
                baseline_name="bare zeroconf register -> Added p50"),
        DFigure("join, mDNS only: max", jm["join"]["max_ms"], zc_add["max_ms"], "ms",
                "<= 200 ms", baseline_name="bare zeroconf max"),
        DFigure("clean leave, beacon only: `/quit` -> `peer_left` bye p50",
                jb["quit_to_left"]["p50_ms"], mc["p50_ms"], "ms", "<= 200 ms",
                baseline_name="raw multicast one-way p50"),
        DFigure("clean leave, mDNS only: `/quit` -> `peer_left` bye p50",
                jm["quit_to_left"]["p50_ms"], zc_rm["p50_ms"], "ms", "<= 200 ms",
                baseline_name="bare zeroconf unregister -> Removed p50"),
        DFigure(f"clean leave, both sources: `/quit` -> `peer_left` bye p50 / max "
                f"(n={lc['quit']['n']})", lc["quit"]["p50_ms"], mc["p50_ms"], "ms",
                "<= 200 ms", baseline_name="raw multicast one-way p50",
                note=f"max {lc['quit']['max_ms']} ms"),
        DFigure(f"clean leave, both sources: SIGTERM -> `peer_left` bye p50 "
                f"(n={lc['term']['n']})", lc["term"]["p50_ms"], mc["p50_ms"], "ms",
                "<= 200 ms", baseline_name="raw multicast one-way p50",
                note=f"max {lc['term']['max_ms']} ms"),
        DFigure(f"crash, SIGKILL -> `peer_left` timeout p50 (n={lc['kill']['n']})",
                lc["kill"]["p50_ms"] and lc["kill"]["p50_ms"] / 1e3, r["stale_s"], "s",
                "<= 6 s", baseline_name="STALE_S"),
        DFigure("crash, SIGKILL: max", lc["kill"]["max_ms"] and lc["kill"]["max_ms"] / 1e3,
                r["stale_s"], "s", "<= 6 s", baseline_name="STALE_S"),
        DFigure(f"crash, link down -> `peer_left` timeout p50 (n={lc['linkdown']['n']})",
                lc["linkdown"]["p50_ms"] and lc["linkdown"]["p50_ms"] / 1e3, r["stale_s"],
                "s", "<= 6 s", baseline_name="STALE_S"),
        DFigure("crash, link down: max",
                lc["linkdown"]["max_ms"] and lc["linkdown"]["max_ms"] / 1e3, r["stale_s"],
                "s", "<= 6 s", baseline_name="STALE_S"),
        DFigure(f"live peers reported gone (`peer_left` timeout) while {lc['victims']} "
                "nodes start and idle, count", lc["false_left"], 0, "", "0",
                baseline_name="expected"),
        DFigure(f"{conv['nodes']} nodes ({conv['hosts']} hosts x {conv['per_host']}) started "
                "at once: first launch -> everyone sees everyone", conv["to_converged_s"],
                conv["to_last_ready_s"], "s", "", baseline_name="first launch -> last `ready`"),
        DFigure(f"idle node, 1 peer: CPU over {idle['seconds']:.0f} s", idle["cpu_pct"],
                idle["cpu_pct_sleep"], "%", "< 1 % of a core",
                baseline_name="idle `python3 -c time.sleep`"),
        DFigure(f"idle node in the {conv['nodes']}-node LAN: CPU, mean of nodes",
                conv["cpu_pct_mean"], conv["cpu_pct_sleep"], "%", "< 1 % of a core",
                baseline_name="idle `python3 -c time.sleep`"),
        DFigure(f"idle node in the {conv['nodes']}-node LAN: CPU, busiest node",
                conv["cpu_pct_max"], conv["cpu_pct_sleep"], "%", "< 1 % of a core",
                baseline_name="idle `python3 -c time.sleep`"),
        DFigure("idle node, 1 peer: packets sent on eth0", idle["tx_pps"],
                idle["sleep_ns_tx_pps"], "pkt/s", "",
                baseline_name="namespace with the sleeping python"),
        DFigure("idle node, 1 peer: packets received on eth0", idle["rx_pps"],
                idle["sleep_ns_rx_pps"], "pkt/s", "",
                baseline_name="namespace with the sleeping python"),
    ]
    return figs


def main(argv: list[str] | None = None) -> int:
    from lanchat.discovery.beacon import BEACON_INTERVAL_S, STALE_S

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small N (CI); asserts nothing")
    ap.add_argument("--json", default="bench/out/discovery.json", help="where to write JSON")
    args = ap.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    victims = sizes["quit"] + sizes["term"] + sizes["kill"] + sizes["linkdown"]
    n_hosts = max(3, 1 + victims, sizes["conv_hosts"] + 1)
    started = time.monotonic()
    r: dict[str, Any] = {"stale_s": STALE_S, "heartbeat_s": BEACON_INTERVAL_S}
    with Lab(n_hosts, mode="netns") as lab:
        log(f"lab {lab.prefix} mode={lab.mode}, {n_hosts} hosts")
        prefix = lab.prefix
        phases = [
            ("mcast", lambda: mcast_baseline(lab, sizes["mcast"])),
            ("zeroconf", lambda: zeroconf_baseline(lab, sizes["zc"])),
            ("join_beacon", lambda: joins(lab, BEACON_ONLY, sizes["joins"], "b")),
            ("join_mdns", lambda: joins(lab, MDNS_ONLY, sizes["joins"], "m")),
            ("leave_crash", lambda: leave_and_crash(lab, sizes)),
            ("idle_pair", lambda: idle_pair(lab, sizes["idle_s"])),
            ("convergence", lambda: convergence(lab, sizes["conv_hosts"],
                                                sizes["conv_per_host"], sizes["idle_s"])),
        ]
        r["phase_s"] = {}
        for name, run in phases:
            t = time.monotonic()
            r[name] = run()
            r["phase_s"][name] = round(time.monotonic() - t, 1)
        log(f"phase seconds: {r['phase_s']}")
    left = lab_namespaces_of(prefix)
    figs = figures(r)
    elapsed = time.monotonic() - started
    jb, jm, lc, conv, idle = (r["join_beacon"], r["join_mdns"], r["leave_crash"],
                              r["convergence"], r["idle_pair"])
    zc = r["zeroconf"]
    notes = [
        f"lab: {n_hosts} network namespaces on one bridge (veth); ratio = lanchat / baseline "
        "(n/a where a figure is not positive)",
        f"join, beacon only: min {jb['join']['min_ms']} ms, p90 {jb['join']['p90_ms']} ms; "
        f"a negative figure means the watcher listed the node before the node emitted its "
        f"own `ready` (the first hello leaves before `ready`); launch -> own `ready` p50 "
        f"{jb['launch_to_ready']['p50_ms']} ms",
        f"join, mDNS only: min {jm['join']['min_ms']} ms, p90 {jm['join']['p90_ms']} ms; bare "
        f"zeroconf register_service() blocks p50 {zc['register_call']['p50_ms']} ms "
        f"(n={zc['register_to_added']['n']})",
        f"clean leave: beacon only max {jb['quit_to_left']['max_ms']} ms, mDNS only max "
        f"{jm['quit_to_left']['max_ms']} ms; `/quit` -> process exit p50 "
        f"{jb['quit_to_exit']['p50_ms']} ms (beacon only), {jm['quit_to_exit']['p50_ms']} ms "
        "(mDNS only)",
        f"crash: SIGKILL min {lc['kill']['min_ms']} ms, link down min "
        f"{lc['linkdown']['min_ms']} ms; expected window STALE_S - age of the last heartbeat"
        f" + expiry tick: {STALE_S - BEACON_INTERVAL_S * 1.2:.1f}..{STALE_S + 0.25:.2f} s; "
        f"reasons {lc['reasons']}",
        f"convergence: launching {conv['nodes']} processes took {conv['launch_s']} s; last "
        f"`ready` -> converged {conv['last_ready_to_converged_s']:.2f} s; per node, own "
        f"`ready` -> all {conv['nodes'] - 1} peers seen p50 "
        f"{conv['per_node_ready_to_all_seen_s']['p50_ms']} ms, max "
        f"{conv['per_node_ready_to_all_seen_s']['max_ms']} ms; first source per join "
        f"{conv['via_counts']}; peer_left during the run {conv['peer_left_during_run']}, "
        f"while idle {conv['peer_left_while_idle']}",
        f"idle, 1 peer: beacons sent {idle['beacons_sent_ps']:.2f}/s (BEACON_INTERVAL_S "
        f"{BEACON_INTERVAL_S} s); the peer's CPU {idle['cpu_pct_peer']:.2f} %; in the "
        f"{conv['nodes']}-node LAN one host ({conv['per_host']} nodes) sent "
        f"{conv['host_tx_pps']:.1f} and received {conv['host_rx_pps']:.1f} pkt/s, least busy "
        f"node {conv['cpu_pct_min']:.2f} % CPU",
    ]
    return finish("Discovery", quick=args.quick, elapsed=elapsed, figures=figs, notes=notes,
                  left=left, json_path=args.json,
                  result={"sizes": sizes, "results": r})


if __name__ == "__main__":
    raise SystemExit(main())
