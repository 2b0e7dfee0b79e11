"""Scale benchmarks: a 50-node LAN with discovery on, broadcast fan-out, start-up time.

    python -m bench.bench_scale [--quick] [--json PATH]

Everything runs in tests/lab.py's namespace lab: H hosts (namespaces) on one bridge, veth
links, 10.77.x.0/24. The discovery phases (beacon + mDNS on, the default) run only in
netns mode: multicast then stays on the lab's bridge. Where the lab falls back to
127.0.0.1 they are skipped and the table says so.

Measured, in one run:
  1. A swarm of N nodes (full: 10 hosts x 5 = 50; quick: 4 x 3 = 12), discovery on, each
     node with its own home, port and threads. Per host one `_scale_driver nodes` process
     hosts the in-process nodes; on h1 one of them is a real `lanchat run --json` process.
     - converge: a "go" line reaches every (already imported) driver; each node counts
       distinct peer_joined ids; converged = the last node has seen all N-1 others. Given
       from "go" and from the moment the last node was ready (pure discovery time), also
       per source (first full view by beacon, by mDNS).
     - idle, after a settle pause, over a window of 20 s: packets and bytes on each host's
       eth0 (/proc/net/dev read inside the namespace) divided by the nodes on that host;
       CPU time of every process (/proc/<pid>/stat utime+stime) divided by its nodes.
     - RSS per node: (driver VmRSS after convergence - its VmRSS after imports, before any
       node started) / nodes in it; and the VmRSS of the `lanchat run --json` node.
     - broadcast to the N-1 discovered peers from one in-process node: the first one
       (sessions are dialed on demand: N-1 TLS handshakes) and then p50 of repeated ones.
     Baseline: the same figures for 2 nodes (one per host), measured first.
  2. Fan-out with peers given by address (discovery off): a hub node on h1; 10, then 30
     peers (in-process nodes on h2.., each dialing the hub with --peer). broadcast() ->
     the last `delivered`, p50; N direct node.send() calls back to back -> last
     `delivered`; one direct send's round trip; a flood of M broadcasts (messages x peers
     per second). Baseline: the same fan-out over N plain TLS 1.3 connections (one frame
     to each, one byte ack from each; same frame size, lanchat's TLS settings).
  3. Start-up: exec of `python -m lanchat --no-mdns --no-beacon --port 0 run --json` ->
     its `ready` line, p50 of 10 (fresh home, and reused home), beside `python -c pass`,
     all timed inside a lab namespace.

Timings are reported, never asserted.
"""

from __future__ import annotations

import argparse
import json
import queue
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import (
    Figure,
    Host,
    Lab,
    chat_frame_size,
    child_env,
    finish,
    lab_namespaces_of,
    percentile,
    precompile,
    rss_kib,
    stop_child,
    summary_us,
)

FULL = {"hosts": 10, "per_host": 5, "settle_s": 5.0, "idle_s": 20.0, "base_idle_s": 10.0,
        "rounds": 20, "fanouts": (10, 30), "flood": 200, "startup_runs": 10,
        "converge_timeout": 90.0}
QUICK = {"hosts": 4, "per_host": 3, "settle_s": 2.0, "idle_s": 5.0, "base_idle_s": 3.0,
         "rounds": 5, "fanouts": (10,), "flood": 50, "startup_runs": 3,
         "converge_timeout": 40.0}
CLK_TCK = 100


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def p50(values: list[float]) -> float:
    return percentile(values, 50) if values else float("nan")


# --------------------------------------------------------------------------- plumbing


class Driver:
    """One `python -m <module>` process in a host namespace, its JSON lines read by a
    thread. (bench.common.read_json_line selects on the buffered pipe, so a second line
    that arrived in the same read as the first waits unseen; this reader does not.)"""

    def __init__(self, host: Host, lab: Lab, tag: str, *args: str,
                 module: str = "bench._scale_driver") -> None:
        self.host = host
        self.tag = tag
        self.err_path = lab.base_dir / f"{tag}.stderr"
        with open(self.err_path, "wb") as err:
            self.proc: subprocess.Popen[str] = host.popen(
                [sys.executable, "-m", module, *args], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=err, env=child_env(), bufsize=1)
        self.count = 0
        self._lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._backlog: list[dict[str, Any]] = []
        threading.Thread(target=self._read_loop, daemon=True).start()

    def _read_loop(self) -> None:
        assert self.proc.stdout is not None
        try:
            for line in self.proc.stdout:
                line = line.strip()
                if line.startswith("{"):
                    try:
                        self._lines.put(json.loads(line))
                    except ValueError:
                        pass
        except (OSError, ValueError):
            pass
        self._lines.put(None)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def read(self, want: str | None, timeout: float) -> dict[str, Any]:
        """The next line whose "kind" is `want` (any line if None); others are kept."""
        for i, obj in enumerate(self._backlog):
            if want is None or obj.get("kind") == want:
                return self._backlog.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            try:
                obj = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                obj, why = None, f"no {want or 'JSON'} line in {timeout} s"
            else:
                why = f"ended (rc={self.proc.poll()}) before {want or 'a JSON line'}"
            if obj is None:
                if self._lines.empty() and self.proc.poll() is not None:
                    self._lines.put(None)
                tail = self.err_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{self.tag} (pid {self.pid}): {why}\n"
                                   f"--- stderr tail:\n{tail}")
            if want is None or obj.get("kind") == want:
                return obj
            self._backlog.append(obj)

    def ask(self, line: str, want: str, timeout: float = 120.0) -> dict[str, Any]:
        self.send(line)
        return self.read(want, timeout)

    def quit(self, timeout: float = 60.0) -> float | None:
        try:
            self.send("quit")
            secs = self.read("closed", timeout)["seconds"]
        except (OSError, RuntimeError):
            secs = None
        stop_child(self.proc, timeout=10)
        return secs


def spawn_nodes(lab: Lab, host: Host, tag: str, count: int, *, discovery: bool,
                expect: int = 0, peer: str = "", timeout: float = 90.0) -> Driver:
    args = ["nodes", "--base", str(lab.base_dir / tag), "--count", str(count),
            "--ip", host.ip, "--prefix", f"{tag}n", "--host", host.name,
            "--expect", str(expect), "--converge-timeout", str(timeout)]
    if discovery:
        args.append("--discovery")
    if peer:
        args += ["--peer", peer]
    d = Driver(host, lab, tag, *args)
    d.count = count
    return d


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process (all threads), in clock ticks."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def netdev(host: Host, iface: str = "eth0") -> dict[str, int]:
    """rx/tx packets and bytes of one interface, read inside the host's namespace."""
    res = host.run(["cat", "/proc/net/dev"], check=True)
    for line in res.stdout.splitlines():
        name, _, rest = line.partition(":")
        if name.strip() == iface:
            f = [int(x) for x in rest.split()]
            return {"rx_bytes": f[0], "rx_packets": f[1], "tx_bytes": f[8], "tx_packets": f[9]}
    raise RuntimeError(f"{host.name}: no {iface} in /proc/net/dev")


def cli_view(proc: Any, expect: int) -> dict[str, Any]:
    """The same convergence record as the driver's, from a `run --json` node's events."""
    ready = next((e["ts"] for e in proc.snapshot() if e.get("event") == "ready"), None)
    joined: dict[str, float] = {}
    via: dict[str, dict[str, float]] = {"beacon": {}, "mdns": {}}
    left: dict[str, int] = {}
    full: dict[str, float] = {}
    for e in proc.snapshot():
        name = e.get("event")
        if name == "peer_left":
            left[e.get("reason", "?")] = left.get(e.get("reason", "?"), 0) + 1
        if name not in ("peer_joined", "peer_updated"):
            continue
        pid = e["peer"]["id"]
        if name == "peer_joined" and pid not in joined:
            joined[pid] = e["ts"]
            if len(joined) >= expect:
                full.setdefault("any", e["ts"])
        for v in e["peer"].get("via") or ():
            if v in via and pid not in via[v]:
                via[v][pid] = e["ts"]
                if len(via[v]) >= expect:
                    full.setdefault(v, e["ts"])
    return {"ready": ready, "full": full, "seen": len(joined), "beacon": len(via["beacon"]),
            "mdns": len(via["mdns"]), "left": left}


# --------------------------------------------------------------------------- 1. swarm


def left_by_reason(views: list[dict[str, Any]]) -> dict[str, int]:
    """peer_left events so far, summed over nodes, by reason."""
    total: dict[str, int] = {}
    for v in views:
        for k, n in v["left"].items():
            total[k] = total.get(k, 0) + n
    return total


def run_swarm(lab: Lab, layout: list[tuple[Host, int]], *, cli: bool, sizes: dict[str, Any],
              idle_s: float, tag: str, broadcast: bool) -> dict[str, Any]:
    """Start the nodes of `layout` (host, in-process nodes) plus, with `cli`, one
    `lanchat run --json` on the first host; measure convergence, idle cost, RSS."""
    total = sum(c for _, c in layout) + (1 if cli else 0)
    expect = total - 1
    res: dict[str, Any] = {"nodes": total, "layout": [(h.name, c) for h, c in layout],
                           "cli_node": cli}
    drivers = [spawn_nodes(lab, h, f"{tag}{h.name}", c, discovery=True, expect=expect,
                           timeout=sizes["converge_timeout"]) for h, c in layout]
    cli_proc = None
    try:
        for d in drivers:
            d.read("loaded", 60)
        time.sleep(0.5)
        floors = {d.pid: rss_kib(d.pid) for d in drivers}
        go = time.time()
        for d in drivers:
            d.send("go")
        if cli:
            h1 = layout[0][0]
            cli_proc = h1.start_node("--interface", h1.ip, nick=f"{tag}cli", port=0,
                                     home=lab.base_dir / f"{tag}cli")
        for d in drivers:
            d.read("ready", 120)
        if cli_proc is not None:
            cli_proc.wait_event("ready", timeout=60)
        all_up = time.time()
        log(f"{tag}: {total} nodes started in {all_up - go:.1f} s")
        conv_lines = [d.read(None, sizes["converge_timeout"] + 30) for d in drivers]
        if cli_proc is not None:
            deadline = time.monotonic() + sizes["converge_timeout"]
            while time.monotonic() < deadline:
                ids = {e["peer"]["id"] for e in cli_proc.events_named("peer_joined")}
                if len(ids) >= expect:
                    break
                time.sleep(0.1)
        # mDNS is slower than the beacon: poll until every node has every peer by mDNS too
        deadline = go + sizes["converge_timeout"]
        while True:
            views = []
            for d in drivers:
                views += d.ask("conv", "conv")["nodes"]
            if cli_proc is not None:
                views.append(cli_view(cli_proc, expect))
            if all("mdns" in v["full"] for v in views) or time.time() > deadline:
                break
            time.sleep(0.5)
        res["mdns_seen_min"] = min(v["mdns"] for v in views)
        res["peer_left"] = {"converge": left_by_reason(views)}
        res["converged_all"] = all(v["seen"] >= expect for v in views)
        res["partial"] = [c for c in conv_lines if c.get("kind") != "converged"]
        last_ready = max(v["ready"] for v in views if v["ready"])
        res["start_spread_s"] = last_ready - go
        for src in ("any", "beacon", "mdns"):
            fulls = [v["full"].get(src) for v in views]
            done = [f for f in fulls if f is not None]
            res[f"converge_{src}"] = {
                "nodes_full": len(done),
                "from_go_s": (max(done) - go) if len(done) == len(views) else None,
                "after_last_ready_s": (max(done) - last_ready) if len(done) == len(views)
                else None,
                "per_node_after_own_ready_p50_s": p50(
                    [f - v["ready"] for f, v in zip(fulls, views, strict=True)
                     if f is not None and v["ready"]]),
            }
        res["seen_min"] = min(v["seen"] for v in views)
        log(f"{tag}: converged={res['converged_all']} any {res['converge_any']} "
            f"mdns {res['converge_mdns']}")

        # idle window
        time.sleep(sizes["settle_s"])
        hosts = [h for h, _ in layout]
        pids = [d.pid for d in drivers] + ([cli_proc.pid] if cli_proc is not None else [])
        stats0 = [d.ask("stats", "stats")["nodes"] for d in drivers]
        net0 = {h.name: netdev(h) for h in hosts}
        cpu0 = {p: cpu_ticks(p) for p in pids}
        t0 = time.monotonic()
        time.sleep(idle_s)
        net1 = {h.name: netdev(h) for h in hosts}
        cpu1 = {p: cpu_ticks(p) for p in pids}
        window = time.monotonic() - t0
        stats1 = [d.ask("stats", "stats")["nodes"] for d in drivers]
        rss = {p: rss_kib(p) for p in pids}
        views = []
        for d in drivers:
            views += d.ask("conv", "conv")["nodes"]
        if cli_proc is not None:
            views.append(cli_view(cli_proc, expect))
        res["peer_left"]["idle"] = left_by_reason(views)
        nodes_on = {h.name: c for h, c in layout}
        if cli:
            nodes_on[layout[0][0].name] += 1
        per_host = {}
        for h in hosts:
            n = nodes_on[h.name]
            per_host[h.name] = {k: (net1[h.name][k] - net0[h.name][k]) / window / n
                                for k in net0[h.name]}
        res["idle_window_s"] = window
        res["net_per_node"] = {k: statistics.mean(v[k] for v in per_host.values())
                               for k in ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes")}
        res["net_per_host"] = per_host
        res["net_segment_tx_packets_s"] = sum(
            (net1[h.name]["tx_packets"] - net0[h.name]["tx_packets"]) for h in hosts) / window
        beacon_sent = sum(b["beacon_seq"] - a["beacon_seq"]
                          for s0, s1 in zip(stats0, stats1, strict=True)
                          for a, b in zip(s0, s1, strict=True))
        inproc = sum(d.count for d in drivers)
        res["beacon_sent_per_node_s"] = beacon_sent / window / inproc
        res["mdns_errors"] = sorted({r["mdns_error"] for s in stats1 for r in s
                                     if r["mdns_error"]})
        dropped: dict[str, int] = {}
        for s1 in stats1:
            for r in s1:
                for k, v in r["beacon_dropped"].items():
                    if v:
                        dropped[k] = dropped.get(k, 0) + v
        res["beacon_dropped"] = dropped
        res["loop_errors"] = sum(r["counters"].get("loop_errors", 0) for s in stats1 for r in s)
        cpu_per_node = []
        for d in drivers:
            cpu_per_node.append((cpu1[d.pid] - cpu0[d.pid]) / CLK_TCK / window / d.count)
        res["cpu_per_node_pct"] = 100 * statistics.mean(cpu_per_node)
        res["cpu_per_node_pct_by_process"] = [100 * c for c in cpu_per_node]
        per_node_kib = [(rss[d.pid] - floors[d.pid]) / d.count for d in drivers]
        res["rss_per_node_kib"] = statistics.mean(per_node_kib)
        res["rss_per_node_kib_by_process"] = per_node_kib
        res["rss_floor_kib"] = statistics.mean(floors.values())
        res["rss_process_kib"] = {d.tag: rss[d.pid] for d in drivers}
        if cli_proc is not None:
            res["cli_rss_kib"] = rss[cli_proc.pid]
            res["cli_cpu_pct"] = 100 * (cpu1[cli_proc.pid] - cpu0[cli_proc.pid]) / CLK_TCK / window
        log(f"{tag}: idle per node tx {res['net_per_node']['tx_packets']:.2f} pkt/s "
            f"rx {res['net_per_node']['rx_packets']:.2f} pkt/s, cpu "
            f"{res['cpu_per_node_pct']:.2f} %, rss/node {res['rss_per_node_kib'] / 1024:.1f} MiB")

        if broadcast:
            bd = drivers[1] if len(drivers) > 1 else drivers[0]
            cold = bd.ask("bcast 1", "bcast", 120)
            warm = bd.ask(f"bcast {sizes['rounds']}", "bcast", 300)
            direct = bd.ask(f"direct {sizes['rounds']}", "direct", 120)
            res["bcast_cold"] = cold
            res["bcast_warm"] = {"peers": warm["peers"][:1], "failed": warm["failed"],
                                 **summary_us(warm["samples_s"])}
            res["direct"] = summary_us(direct["samples_s"])
            log(f"{tag}: broadcast to {cold['peers']} discovered peers: first "
                f"{cold['samples_s'][0] * 1000 if cold['samples_s'] else float('nan'):.1f} ms,"
                f" then p50 {res['bcast_warm']['p50_us'] / 1000:.1f} ms")

        # flapping over the whole run
        views = []
        for d in drivers:
            views += d.ask("conv", "conv")["nodes"]
        if cli_proc is not None:
            views.append(cli_view(cli_proc, expect))
        res["peer_left"]["end"] = left_by_reason(views)
        res["peer_left_total"] = sum(sum(v["left"].values()) for v in views)
        res["seen_min_end"] = min(v["seen"] for v in views)
    finally:
        closes = [d.quit() for d in drivers]
        res["close_s_per_process"] = closes
        if cli_proc is not None:
            cli_proc.stop()
    return res


# --------------------------------------------------------------------------- 2. fan-out


def run_fanout(lab: Lab, sizes: dict[str, Any], frame: int) -> dict[str, Any]:
    from lanchat.identity import Identity

    h1 = lab.hosts[0]
    recv_hosts = lab.hosts[1:]
    res: dict[str, Any] = {}
    hub = spawn_nodes(lab, h1, "hub", 1, discovery=False)
    drivers: list[Driver] = [hub]
    servers: list[Driver] = []
    try:
        hub.read("loaded", 60)
        hub.send("go")
        ready = hub.read("ready", 60)
        hub_addr = f"{h1.ip}:{ready['ports'][0]}"
        ident = Identity.load_or_create(lab.base_dir / "tls-baseline-id")
        ports: dict[str, int] = {}
        for h in recv_hosts:
            s = Driver(h, lab, f"tls{h.name}", "tlsserve", "--ip", h.ip,
                       "--cert", str(ident.cert_path), "--key", str(ident.key_path))
            servers.append(s)
        for s in servers:
            ports[s.host.name] = s.read("listening", 30)["port"]
        have = 0
        stage = 0
        for n in sizes["fanouts"]:
            add = n - have
            counts = [add // len(recv_hosts) + (1 if i < add % len(recv_hosts) else 0)
                      for i in range(len(recv_hosts))]
            new = []
            for h, c in zip(recv_hosts, counts, strict=True):
                if c:
                    d = spawn_nodes(lab, h, f"fo{stage}{h.name}", c, discovery=False,
                                    peer=hub_addr)
                    new.append(d)
            drivers += new
            for d in new:
                d.read("loaded", 60)
            for d in new:
                d.send("go")
            for d in new:
                d.read("ready", 120)
            joined = hub.ask(f"wait_joined {n} 60", "joined", 90)
            if not joined["ok"]:
                raise RuntimeError(f"hub saw {joined['n']} of {n} peers")
            have = n
            stage += 1
            r = sizes["rounds"]
            hub.ask("bcast 2", "bcast", 60)  # warm-up, dropped
            recv_pids = [d.pid for d in drivers[1:]]
            c_hub, c_recv = cpu_ticks(hub.pid), sum(cpu_ticks(p) for p in recv_pids)
            bc = hub.ask(f"bcast {r}", "bcast", 300)
            cpu_hub = (cpu_ticks(hub.pid) - c_hub) / CLK_TCK / r
            cpu_recv = (sum(cpu_ticks(p) for p in recv_pids) - c_recv) / CLK_TCK / r
            fd = hub.ask(f"fanout_direct {r}", "fanout_direct", 300)
            di = hub.ask(f"direct {r}", "direct", 120)
            fl = hub.ask(f"flood {sizes['flood']}", "flood", 600)
            # plain TLS fan-out over the same hosts, the same number of connections
            targets = ",".join(f"{s.host.ip}:{ports[s.host.name]}" for s in servers)
            fan = Driver(h1, lab, f"tlsfan{n}", "tlsfan", "--targets", targets, "--conns",
                         str(n), "--rounds", str(r), "--flood", str(sizes["flood"]),
                         "--size", str(frame))
            tl = fan.read("tlsfan", 300)
            stop_child(fan.proc)
            res[str(n)] = {"bcast": {**summary_us(bc["samples_s"]), "failed": bc["failed"],
                                     "peers": bc["peers"][:1]},
                           "fanout_direct": summary_us(fd["samples_s"]),
                           "direct": summary_us(di["samples_s"]),
                           "flood": fl,
                           "tls_fanout": summary_us(tl["samples_s"]),
                           "tls_flood": {k: tl.get(k) for k in ("flood", "seconds", "rate")},
                           "tls_connect_s": tl["connect_s"],
                           "cpu_per_bcast_ms": {"sender": cpu_hub * 1000,
                                                "receivers": cpu_recv * 1000,
                                                "per_receiver": cpu_recv * 1000 / n}}
            log(f"fan-out {n}: broadcast p50 {res[str(n)]['bcast']['p50_us'] / 1000:.2f} ms "
                f"(TLS {res[str(n)]['tls_fanout']['p50_us'] / 1000:.2f} ms), "
                f"{n} sends p50 {res[str(n)]['fanout_direct']['p50_us'] / 1000:.2f} ms, "
                f"direct p50 {res[str(n)]['direct']['p50_us'] / 1000:.2f} ms; flood "
                f"{fl['rate']:,.0f} deliveries/s (TLS {tl.get('rate', 0):,.0f}); CPU per "
                f"broadcast: sender {cpu_hub * 1000:.1f} ms, all receivers "
                f"{cpu_recv * 1000:.1f} ms")
    finally:
        for d in drivers:
            d.quit()
        for s in servers:
            stop_child(s.proc)
    return res


# --------------------------------------------------------------------------- 3. start-up


def run_startup(lab: Lab, sizes: dict[str, Any]) -> dict[str, Any]:
    h = lab.hosts[0]
    d = Driver(h, lab, "startup", "--base", str(lab.base_dir / "startup"), "--runs",
               str(sizes["startup_runs"]), module="bench._scale_startup")
    try:
        res = d.read("startup", 300)
    finally:
        stop_child(d.proc)
    for k in ("cold_s", "warm_s", "pass_s", "imports_s", "exit_s", "cold_event_ts_s",
              "warm_event_ts_s"):
        res[f"{k}_p50"] = p50(res[k])
    log(f"start-up p50: cold {res['cold_s_p50'] * 1000:.0f} ms, warm "
        f"{res['warm_s_p50'] * 1000:.0f} ms, python -c pass {res['pass_s_p50'] * 1000:.0f} ms")
    return res


# --------------------------------------------------------------------------- report


def _fmt(v: float | None, unit: str) -> str:
    if v is None or v != v:
        return "n/a"
    if unit == "us":
        return f"{v:,.0f} µs"
    if unit in ("msg/s", "B/s"):
        return f"{v:,.0f} {unit}"
    if unit == "ms":
        return f"{v:,.0f} ms" if v >= 10 else f"{v:,.1f} ms"
    if unit == "s":
        return f"{v:,.2f} s"
    if unit in ("MiB", "pkt/s"):
        return f"{v:,.1f} {unit}" if v >= 1 else f"{v:,.2f} {unit}"
    if unit == "%":
        return f"{v:,.2f} %"
    return f"{v:,.3g} {unit}"


def markdown_table(figs: list[Figure]) -> str:
    """figure | lanchat | baseline | ratio | goal (bench.common's shape, more units)."""
    lines = ["| figure | lanchat | baseline | ratio | goal |", "|---|---:|---:|---:|---|"]
    for f in figs:
        b = _fmt(f.baseline, f.unit)
        if f.baseline_name and f.baseline is not None:
            b = f"{b} ({f.baseline_name})"
        ratio = "n/a" if f.ratio is None else f"{f.ratio:.2f}x"
        lines.append(f"| {f.name} | {_fmt(f.lanchat, f.unit)} | {b} | {ratio} | {f.goal} |")
    return "\n".join(lines)


def figures(base: dict[str, Any] | None, sw: dict[str, Any] | None, fo: dict[str, Any],
            st: dict[str, Any]) -> list[Figure]:
    figs: list[Figure] = []
    if sw is not None and base is not None:
        n = sw["nodes"]
        bn = base["nodes"]
        mib = 1024.0

        def conv(r: dict[str, Any], src: str, key: str) -> float | None:
            v = r[f"converge_{src}"][key]
            return v

        figs += [
            Figure(f"converge, {n} nodes: \"go\" -> every node has seen the {n - 1} others",
                   conv(sw, "any", "from_go_s"), conv(base, "any", "from_go_s"), "s",
                   "< 3 s", baseline_name=f"{bn} nodes"),
            Figure(f"converge, {n} nodes, after the last node was up",
                   conv(sw, "any", "after_last_ready_s"), None, "s", "< 1 s"),
            Figure("converge by mDNS alone, after the last node was up",
                   conv(sw, "mdns", "after_last_ready_s"),
                   conv(base, "mdns", "after_last_ready_s"), "s", "< 5 s",
                   baseline_name=f"{bn} nodes"),
            Figure("RSS per node (in-process, marginal)", sw["rss_per_node_kib"] / mib,
                   base["rss_per_node_kib"] / mib, "MiB", "< 10 MiB",
                   baseline_name=f"{bn} nodes"),
            Figure(f"RSS of the `lanchat run --json` node, {n - 1} peers",
                   sw.get("cli_rss_kib", 0) / mib or None, None, "MiB", "< 60 MiB"),
            Figure("idle traffic per node, sent (pkt/s)", sw["net_per_node"]["tx_packets"],
                   base["net_per_node"]["tx_packets"], "pkt/s", "< 2 pkt/s",
                   baseline_name=f"{bn} nodes"),
            Figure("idle traffic per node, sent (bytes/s)", sw["net_per_node"]["tx_bytes"],
                   base["net_per_node"]["tx_bytes"], "B/s", "< 1 KB/s",
                   baseline_name=f"{bn} nodes"),
            Figure("idle traffic per node, received on its host's eth0 / nodes (pkt/s)",
                   sw["net_per_node"]["rx_packets"], base["net_per_node"]["rx_packets"],
                   "pkt/s", "", baseline_name=f"{bn} nodes"),
            Figure("idle CPU per node (% of one core)", sw["cpu_per_node_pct"],
                   base["cpu_per_node_pct"], "%", "< 1 %", baseline_name=f"{bn} nodes"),
        ]
        if "bcast_cold" in sw and sw["bcast_cold"]["samples_s"]:
            peers = sw["bcast_cold"]["peers"][0]
            figs += [
                Figure(f"broadcast to {peers} discovered peers, first (dials {peers} sessions)",
                       sw["bcast_cold"]["samples_s"][0] * 1e6, sw["bcast_warm"]["p50_us"],
                       "us", "< 1 s", baseline_name="same, sessions open, p50"),
                Figure(f"broadcast to {peers} discovered peers, sessions open, p50",
                       sw["bcast_warm"]["p50_us"], sw["direct"]["p50_us"], "us",
                       "", baseline_name="one direct send, p50"),
            ]
    for n, r in fo.items():
        figs += [
            Figure(f"broadcast() -> last `delivered`, {n} peers, p50", r["bcast"]["p50_us"],
                   r["tls_fanout"]["p50_us"], "us", "< 10 ms",
                   baseline_name=f"plain TLS fan-out to {n}, p50"),
            Figure(f"{n} direct node.send() back to back -> last `delivered`, p50",
                   r["fanout_direct"]["p50_us"], r["bcast"]["p50_us"], "us", "",
                   baseline_name="broadcast() p50"),
            Figure(f"broadcast flood, {n} peers (messages x peers / s)", r["flood"]["rate"],
                   r["tls_flood"]["rate"], "msg/s", ">= 20,000 msg/s", better="higher",
                   baseline_name=f"plain TLS to {n}"),
        ]
    figs += [
        Figure("start-up, exec -> `ready`, fresh home, p50", st["cold_s_p50"] * 1000,
               st["pass_s_p50"] * 1000, "ms", "< 500 ms", baseline_name="python -c pass"),
        Figure("start-up, exec -> `ready`, home reused, p50", st["warm_s_p50"] * 1000,
               st["pass_s_p50"] * 1000, "ms", "< 300 ms", baseline_name="python -c pass"),
    ]
    return figs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="12 nodes, short windows; asserts "
                    "nothing")
    ap.add_argument("--json", default="bench/out/scale.json", help="where to write JSON")
    args = ap.parse_args(argv)
    sizes = dict(QUICK if args.quick else FULL)
    precompile()
    started = time.monotonic()
    frame = chat_frame_size("b000000000 ".ljust(40, "x"))
    with Lab(sizes["hosts"]) as lab:
        log(f"lab {lab.prefix} mode={lab.mode} {lab.fallback_reason or ''}")
        base = sw = None
        if lab.mode == "netns":
            h = lab.hosts
            base = run_swarm(lab, [(h[0], 1), (h[1], 1)], cli=False, sizes=sizes,
                             idle_s=sizes["base_idle_s"], tag="pair", broadcast=False)
            layout = [(x, sizes["per_host"] - (1 if i == 0 else 0)) for i, x in enumerate(h)]
            sw = run_swarm(lab, layout, cli=True, sizes=sizes, idle_s=sizes["idle_s"],
                           tag="sw", broadcast=True)
        else:
            log("not in netns mode: the discovery phases are skipped (network safety)")
        fo = run_fanout(lab, sizes, frame)
        st = run_startup(lab, sizes)
        mode, reason, prefix = lab.mode, lab.fallback_reason, lab.prefix
    left = lab_namespaces_of(prefix)
    figs = figures(base, sw, fo, st)
    elapsed = time.monotonic() - started
    notes = [f"lab mode: {mode}{' (' + reason + ')' if reason else ''}; "
             f"{sizes['hosts']} hosts; chat frame {frame} bytes; ratio = lanchat / baseline"]
    if sw is not None:
        notes += [
            f"swarm: {sw['nodes']} nodes, start spread (go -> last ready) "
            f"{sw['start_spread_s']:.2f} s; converged: {sw['converged_all']}; "
            f"converge by beacon after last ready: "
            f"{sw['converge_beacon']['after_last_ready_s']}; peer_left events during the "
            f"run: {sw['peer_left_total']} (cumulative, by reason: after convergence "
            f"{sw['peer_left']['converge']}, after the idle window {sw['peer_left']['idle']}, "
            f"after the broadcasts {sw['peer_left']['end']}); min peers seen at the end "
            f"{sw['seen_min_end']}; slowest driver close "
            f"{max(c or 0 for c in sw['close_s_per_process']):.1f} s for "
            f"{sizes['per_host']} nodes",
            f"idle: beacon datagrams sent per node {sw['beacon_sent_per_node_s']:.2f}/s; "
            f"segment total {sw['net_segment_tx_packets_s']:.0f} pkt/s sent; idle CPU of the "
            f"`run --json` node {sw.get('cli_cpu_pct', float('nan')):.2f} %; "
            f"driver RSS after imports {sw['rss_floor_kib'] / 1024:.1f} MiB",
            f"mDNS errors: {sw['mdns_errors'] or 'none'}; beacon datagrams dropped "
            f"{sw['beacon_dropped']}; loop errors {sw['loop_errors']}",
        ]
    for n, r in fo.items():
        c = r["cpu_per_bcast_ms"]
        notes.append(f"fan-out {n}: CPU per broadcast, sender {c['sender']:.2f} ms, all "
                     f"receivers {c['receivers']:.2f} ms ({c['per_receiver']:.2f} ms each); "
                     f"one direct send p50 {r['direct']['p50_us'] / 1000:.2f} ms; TLS "
                     f"baseline: {n} handshakes took {r['tls_connect_s'] * 1000:.0f} ms")
    notes.append(
        f"start-up p50: `python -c \"import lanchat.cli, lanchat.headless, lanchat.node\"` "
        f"{st['imports_s_p50'] * 1000:.0f} ms; exit after stdin closes "
        f"{st['exit_s_p50'] * 1000:.0f} ms; slowest imports: "
        + ", ".join(f"{r['module']} {r['cumulative_us'] / 1000:.0f} ms"
                    for r in st["importtime_top"][:6]))
    return finish("Scale", quick=args.quick, elapsed=elapsed, figures=figs, notes=notes,
                  left=left, json_path=args.json,
                  result={"sizes": sizes, "lab_mode": mode, "frame_bytes": frame, "pair": base,
                          "swarm": sw, "fanout": fo, "startup": st})


if __name__ == "__main__":
    raise SystemExit(main())
