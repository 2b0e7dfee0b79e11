"""Messaging benchmarks: round trip, durable one-way rate, memory; each beside a baseline.

    python -m bench.bench_messaging [--quick] [--json PATH]

Everything runs in tests/lab.py's namespace lab (two hosts h1, h2 on one bridge, veth
links, 10.77.x.0/24), or on 127.0.0.1 where namespaces cannot be made. Nodes never run
discovery (mDNS and beacon are off; peers are given by address).

Measured, in one run:
  1. round trip over veth, p50/p99:
       lanchat "delivered": node.send() -> own `delivered` event (store, send, peer stores
       and acks, own commit of the ack); lanchat "echo": node.send() -> the peer's echo
       (sent by an in-process responder through node.send()) arrives as a `message` event;
       baseline: plain Python TLS 1.3 ping-pong of frames of the same size.
  2. one-way messages per second, every message stored (SQLite WAL, synchronous=FULL) and
       acked: first send -> last `delivered`; through the public node.send(), through the
       node's internal queue (no per-call round trip), and to a `lanchat run --json`
       receiver; baseline: plain Python TLS one-way stream of the same frames (raw TCP too).
  3. RSS (VmRSS) of an idle `lanchat run --json` node and of the same node with 20 open
       sessions; baseline: an idle `python -c "import ssl, sqlite3, asyncio"`.

Timings are reported, never asserted.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._driver import text_for
from bench.common import (
    NO_DISCOVERY,
    Figure,
    Lab,
    chat_frame_size,
    finish,
    lab_namespaces_of,
    precompile,
    read_json_line,
    rss_kib,
    start_py,
    stop_child,
    summary_us,
)

FULL = {"rtt": 2000, "echo": 2000, "flood_public": 10_000, "flood_queue": 50_000,
        "flood_headless": 50_000, "tls_pingpong": 3000, "stream": 50_000, "sessions": 20,
        "rounds": 3}
QUICK = {"rtt": 200, "echo": 200, "flood_public": 1000, "flood_queue": 5000,
         "flood_headless": 5000, "tls_pingpong": 500, "stream": 5000, "sessions": 20,
         "rounds": 1}


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- baselines


def run_tls_baselines(lab: Lab, sizes: dict[str, int], frame: int) -> dict[str, Any]:
    from lanchat.identity import Identity

    h1, h2 = lab.hosts[:2]
    ident = Identity.load_or_create(lab.base_dir / "baseline-id")
    server = start_py(h2, "bench._tls_baseline", "server", "--ip", h2.ip,
                      "--cert", str(ident.cert_path), "--key", str(ident.key_path))
    res: dict[str, Any] = {}
    try:
        ports = read_json_line(server, 20, "listening")

        def client(port: int, tls: bool, mode: str, n: int) -> dict[str, Any]:
            args = ["client", "--ip", h2.ip, "--port", str(port), "--mode", mode,
                    "--n", str(n), "--size", str(frame)] + (["--tls"] if tls else [])
            proc = start_py(h1, "bench._tls_baseline", *args)
            try:
                return read_json_line(proc, 120)
            finally:
                stop_child(proc)

        rounds: list[dict[str, Any]] = []
        for _ in range(sizes["rounds"]):
            one: dict[str, Any] = {}
            for tls, port in ((True, ports["tls_port"]), (False, ports["raw_port"])):
                tag = "tls" if tls else "raw"
                pp = client(port, tls, "pingpong", sizes["tls_pingpong"])
                one[f"{tag}_pingpong"] = summary_us(pp["samples_s"])
                st = client(port, tls, "stream", sizes["stream"])
                one[f"{tag}_stream"] = {k: st[k] for k in ("n", "seconds", "rate")}
            rounds.append(one)
        # the VM is noisy: report the median of the rounds, metric by metric
        for key in rounds[0]:
            res[key] = {m: statistics.median(r[key][m] for r in rounds)
                        for m in rounds[0][key]}
        res["rounds"] = rounds
        for tag in ("tls", "raw"):
            log(f"baseline {tag}: ping-pong p50 {res[f'{tag}_pingpong']['p50_us']} us, "
                f"stream {res[f'{tag}_stream']['rate']:,.0f} msg/s "
                f"(median of {len(rounds)} rounds)")
    finally:
        stop_child(server)
    return res


def fsync_floor(directory: Path, n: int = 300) -> dict[str, float]:
    """Latency of one single-row commit in SQLite WAL + synchronous=FULL (the disk's floor
    under every durable message round trip)."""
    path = directory / "fsync-probe.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
    samples = []
    for i in range(n):
        t0 = time.perf_counter()
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO t (v) VALUES (?)", (text_for(i),))
        db.execute("COMMIT")
        samples.append(time.perf_counter() - t0)
    db.close()
    return summary_us(samples)


# --------------------------------------------------------------------------- lanchat


def run_client(lab: Lab, peer: str, home: Path, *args: str,
               timeout: float = 240) -> dict[str, dict[str, Any]]:
    """One `_driver client` run on h1 against `peer`; returns its result lines by kind."""
    h1 = lab.hosts[0]
    proc = start_py(h1, "bench._driver", "client", "--home", str(home), "--ip", h1.ip,
                    "--peer", peer, *args)
    results: dict[str, dict[str, Any]] = {}
    try:
        deadline = time.monotonic() + timeout
        while True:
            obj = read_json_line(proc, max(1.0, deadline - time.monotonic()))
            results[obj["kind"]] = obj
            if obj["kind"] == "done":
                break
    finally:
        stop_child(proc)
    return results


def run_lanchat(lab: Lab, sizes: dict[str, int], profile_dir: Path | None) -> dict[str, Any]:
    h1, h2 = lab.hosts[:2]
    res: dict[str, Any] = {}
    alice_home = lab.base_dir / "alice"
    sink = start_py(h2, "bench._driver", "sink", "--home", str(lab.base_dir / "bob"),
                    "--ip", h2.ip, "--echo")
    try:
        ready = read_json_line(sink, 30, "ready")
        peer = f"{h2.ip}:{ready['port']}"
        # 1 + 2a: latency phases and the public-API flood
        prof = ["--profile", str(profile_dir / "flood_public.prof")] if profile_dir else []
        out = run_client(lab, peer, alice_home, "--rtt", str(sizes["rtt"]),
                         "--echo", str(sizes["echo"]), "--flood", str(sizes["flood_public"]),
                         "--flood-api", "public", *prof)
        res["rtt_delivered"] = summary_us(out["rtt"]["samples_s"])
        res["rtt_echo"] = summary_us(out["echo"]["samples_s"])
        res["flood_public"] = out["flood"]
        log(f"lanchat rtt delivered p50 {res['rtt_delivered']['p50_us']} us, echo p50 "
            f"{res['rtt_echo']['p50_us']} us; public send() {out['flood'].get('rate', 0):,.0f}"
            " msg/s")
        # 2b: the node's pipeline without the per-call resolve() round trip
        prof = ["--profile", str(profile_dir / "flood_queue.prof")] if profile_dir else []
        out = run_client(lab, peer, alice_home, "--flood", str(sizes["flood_queue"]),
                         "--flood-api", "queue", *prof)
        res["flood_queue"] = out["flood"]
        log(f"lanchat internal queue {out['flood'].get('rate', 0):,.0f} msg/s")
    finally:
        stop_child(sink)
    # 2c: the same flood into a real `lanchat run --json` receiver (prints every message)
    bob = h2.start_node(*NO_DISCOVERY, nick="bobcli", port=0,
                        home=lab.base_dir / "bobcli")
    ready_ev = bob.wait_event("ready", timeout=30)
    out = run_client(lab, f"{h2.ip}:{ready_ev['port']}", lab.base_dir / "alice2",
                     "--flood", str(sizes["flood_headless"]), "--flood-api", "queue")
    res["flood_headless"] = out["flood"]
    log(f"lanchat into `run --json` receiver {out['flood'].get('rate', 0):,.0f} msg/s")
    bob.stop()
    return res


def run_memory(lab: Lab, sizes: dict[str, int]) -> dict[str, Any]:
    h1, h2 = lab.hosts[:2]
    res: dict[str, Any] = {}
    bare = h1.popen([sys.executable, "-c",
                     "import ssl, sqlite3, asyncio, sys; print('up', flush=True); "
                     "sys.stdin.read()"], stdin=-1, stdout=-1)
    assert bare.stdout is not None
    bare.stdout.readline()
    time.sleep(0.5)
    res["bare_python_kib"] = rss_kib(bare.pid)
    stop_child(bare)

    # first start on a fresh home (it makes the key and certificate), then the usual case:
    # a start on a home used before
    hub = h1.start_node(*NO_DISCOVERY, nick="hub", port=0, home=lab.base_dir / "hub")
    hub.wait_event("ready", timeout=30)
    time.sleep(1.0)
    res["fresh_kib"] = rss_kib(hub.pid)
    hub.stop()
    hub = h1.start_node(*NO_DISCOVERY, nick="hub", port=0, home=lab.base_dir / "hub")
    ready = hub.wait_event("ready", timeout=30)
    time.sleep(1.0)
    comm = Path(f"/proc/{hub.pid}/comm").read_text().strip()
    res["idle_kib"] = rss_kib(hub.pid)
    res["idle_comm"] = comm
    k = sizes["sessions"]
    swarm = start_py(h2, "bench._driver", "swarm", "--base", str(lab.base_dir / "swarm"),
                     "--count", str(k), "--ip", h2.ip, "--peer", f"{h1.ip}:{ready['port']}")
    try:
        read_json_line(swarm, 120, "ready")
        hub.wait_count("message", k, timeout=30)
        time.sleep(1.0)
        res["sessions"] = k
        res["sessions_kib"] = rss_kib(hub.pid)
        res["swarm_process_kib"] = rss_kib(swarm.pid)
    finally:
        stop_child(swarm, timeout=30)
        hub.stop()
    log(f"RSS bare {res['bare_python_kib']} KiB, idle node {res['idle_kib']} KiB, "
        f"{k} sessions {res['sessions_kib']} KiB")
    return res


# --------------------------------------------------------------------------- report


def figures(base: dict[str, Any], lc: dict[str, Any], mem: dict[str, Any],
            floor: dict[str, float]) -> list[Figure]:
    tls_pp = base["tls_pingpong"]
    tls_rate = base["tls_stream"]["rate"]
    # the floor for "acked only once stored": one round trip plus the receiver's commit
    durable_rtt = tls_pp["p50_us"] + floor["p50_us"]
    figs = [
        Figure("round trip p50, send -> `delivered`, against the durable floor",
               lc["rtt_delivered"]["p50_us"], durable_rtt, "us", "<= 1.5x",
               baseline_name="TLS ping-pong p50 + one commit p50"),
        Figure("round trip p99, send -> `delivered`, against the durable floor",
               lc["rtt_delivered"]["p99_us"], durable_rtt, "us", "<= 2x",
               baseline_name="TLS ping-pong p50 + one commit p50"),
        Figure("round trip p50, send -> `delivered` (stored + acked)",
               lc["rtt_delivered"]["p50_us"], tls_pp["p50_us"], "us", "within 2x",
               baseline_name="TLS ping-pong p50"),
        Figure("round trip p99, send -> `delivered`", lc["rtt_delivered"]["p99_us"],
               tls_pp["p99_us"], "us", "within 2x", baseline_name="TLS ping-pong p99"),
        Figure("round trip p50, echo (A -> B -> A, both stored)", lc["rtt_echo"]["p50_us"],
               tls_pp["p50_us"], "us", "within 2x", baseline_name="TLS ping-pong p50"),
        Figure("round trip p99, echo", lc["rtt_echo"]["p99_us"], tls_pp["p99_us"], "us",
               "within 2x", baseline_name="TLS ping-pong p99"),
    ]
    for key, label, goal in (("flood_public", "public `node.send()`", ">= 0.9x"),
                             ("flood_queue", "node's internal queue", ">= 0.9x"),
                             ("flood_headless", "internal queue, into `run --json`",
                              ">= 0.7x")):
        fl = lc[key]
        figs.append(Figure(f"one way, stored + acked, {label} (N={fl.get('n', '?'):,})",
                           fl.get("rate"), tls_rate, "msg/s", goal,
                           better="higher", baseline_name="TLS stream"))
    mib = 1024.0
    figs += [
        Figure("RSS, idle `lanchat run --json` (home used before)", mem["idle_kib"] / mib,
               mem["bare_python_kib"] / mib, "MiB", "< 36 MiB", baseline_name="bare python"),
        Figure("RSS, idle `lanchat run --json`, first start (makes its key)",
               mem["fresh_kib"] / mib, mem["bare_python_kib"] / mib, "MiB", "",
               baseline_name="bare python"),
        Figure(f"RSS, same node with {mem['sessions']} sessions", mem["sessions_kib"] / mib,
               mem["bare_python_kib"] / mib, "MiB", "", baseline_name="bare python"),
    ]
    return figs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small N (CI); asserts nothing")
    ap.add_argument("--json", default="bench/out/messaging.json", help="where to write JSON")
    ap.add_argument("--profile", metavar="DIR", default="",
                    help="cProfile the sending thread of the floods into DIR")
    args = ap.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    profile_dir = Path(args.profile).resolve() if args.profile else None
    if profile_dir:
        profile_dir.mkdir(parents=True, exist_ok=True)
    precompile()
    started = time.monotonic()
    frame = chat_frame_size(text_for(0))
    with Lab(2) as lab:
        log(f"lab {lab.prefix} mode={lab.mode} {lab.fallback_reason or ''}")
        with tempfile.TemporaryDirectory(dir=lab.base_dir) as tmp:
            floor = fsync_floor(Path(tmp))
        log(f"fsync floor p50 {floor['p50_us']} us")
        base = run_tls_baselines(lab, sizes, frame)
        lc = run_lanchat(lab, sizes, profile_dir)
        mem = run_memory(lab, sizes)
        mode, reason = lab.mode, lab.fallback_reason
        prefix = lab.prefix
    left = lab_namespaces_of(prefix)
    figs = figures(base, lc, mem, floor)
    elapsed = time.monotonic() - started
    notes = [
        f"lab mode: {mode}{' (' + reason + ')' if reason else ''}; chat frame {frame} bytes "
        "(40-character text); ratio = lanchat / baseline",
        f"raw TCP baseline: ping-pong p50 {base['raw_pingpong']['p50_us']:.0f} µs / p99 "
        f"{base['raw_pingpong']['p99_us']:.0f} µs, one-way {base['raw_stream']['rate']:,.0f} msg/s",
        f"SQLite WAL synchronous=FULL single-row commit (the disk floor under each durable "
        f"hop): p50 {floor['p50_us']:.0f} µs, p99 {floor['p99_us']:.0f} µs",
        "the sender's CPU per message (all its threads; steadier than the rates on a busy "
        "machine): " + ", ".join(
            f"{label} {lc[key].get('cpu_us_per_msg', 0):.0f} µs" for key, label in (
                ("flood_public", "public send()"), ("flood_queue", "internal queue"),
                ("flood_headless", "into run --json"))),
        f"public send(): the caller's loop took {lc['flood_public'].get('send_seconds', 0):.2f}"
        f" s of {lc['flood_public'].get('seconds', 0):.2f} s",
        f"swarm process hosting the {mem['sessions']} peer nodes: "
        f"{mem['swarm_process_kib'] / 1024:.1f} MiB",
    ]
    return finish("Messaging", quick=args.quick, elapsed=elapsed, figures=figs, notes=notes,
                  left=left, json_path=args.json,
                  result={"sizes": sizes, "lab_mode": mode, "frame_bytes": frame,
                          "fsync_floor": floor, "baseline": base, "lanchat": lc,
                          "memory": mem})


if __name__ == "__main__":
    raise SystemExit(main())
