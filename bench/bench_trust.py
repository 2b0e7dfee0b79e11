"""What the trust checks cost, and what a stranger's flood can still do; same run, in the lab.

    python -m bench.bench_trust [--quick] [--json PATH]

1. Messages per second (one-way flood, every message stored and acked) and round trip
   (send -> own `delivered`), with the checks on the message path on (stranger budget
   accounting with the limits lifted so it never defers, send-time window, store-size
   check) and off (bench/_trust_driver.py puts the node back as it was); rounds alternate
   off/on so drift hits both alike.
2. A raw flood of 16 kB messages that ignores slow_down (tests/hostile.py), into a node
   with the default stranger limits and into one with them lifted (the node before the
   limits): the receiver's store growth and RSS, sampled while the flood runs.

Timings are reported, never asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import (
    Figure,
    Lab,
    finish,
    lab_namespaces_of,
    precompile,
    read_json_line,
    rss_kib,
    start_py,
    stop_child,
    summary_us,
)

FULL = {"rtt": 1000, "flood": 20_000, "rounds": 5, "flood_s": 8.0}
QUICK = {"rtt": 200, "flood": 3000, "rounds": 1, "flood_s": 3.0}
LIFTED = {"LANCHAT_LIMIT_STRANGER_MSGS_PER_S": "1e9", "LANCHAT_LIMIT_STRANGER_MSG_BURST": "1e9",
          "LANCHAT_LIMIT_STRANGER_OFFERS_PER_MIN": "1e9",
          "LANCHAT_LIMIT_STRANGER_BYTES_PER_DAY": "1e12"}
DEFAULTS = {"LANCHAT_LIMIT_STRANGER_MSGS_PER_S": "5", "LANCHAT_LIMIT_STRANGER_MSG_BURST": "100",
            "LANCHAT_LIMIT_STRANGER_OFFERS_PER_MIN": "6"}


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def one_round(lab: Lab, checks: str, sizes: dict[str, Any], k: int) -> dict[str, Any]:
    """A sink and a client, both with the checks `on` or `off`: rtt, then the flood."""
    h1, h2 = lab.hosts[:2]
    sink = start_py(h2, "bench._trust_driver", "--checks", checks, "sink", "--home",
                    str(lab.base_dir / f"bob-{checks}{k}"), "--ip", h2.ip, extra_env=LIFTED)
    try:
        ready = read_json_line(sink, 30, "ready")
        client = start_py(h1, "bench._trust_driver", "--checks", checks, "client", "--home",
                          str(lab.base_dir / f"alice-{checks}{k}"), "--ip", h1.ip, "--peer",
                          f"{h2.ip}:{ready['port']}", "--rtt", str(sizes["rtt"]),
                          "--flood", str(sizes["flood"]), "--flood-api", "public",
                          extra_env=LIFTED)
        results: dict[str, Any] = {}
        try:
            while "done" not in results:
                obj = read_json_line(client, 300)
                results[obj["kind"]] = obj
        finally:
            stop_child(client)
    finally:
        stop_child(sink)
    rtt = summary_us(results["rtt"]["samples_s"])
    rate = results["flood"].get("rate", 0.0)
    log(f"checks {checks}: rtt p50 {rtt['p50_us']:.0f} us, flood {rate:,.0f} msg/s")
    return {"rtt": rtt, "rate": rate}


def store_bytes(home: Path) -> int:
    return sum(p.stat().st_size for p in home.glob("lanchat.db*") if p.is_file())


def flood_into(lab: Lab, name: str, env: dict[str, str], seconds: float) -> dict[str, Any]:
    """A raw 16 kB flood from h1 into a `lanchat run --json` node on h2 under `env`."""
    h1, h2 = lab.hosts[:2]
    node = h2.start_node("--no-mdns", "--no-beacon", nick=name, port=0,
                         home=lab.base_dir / name, env=env)
    port = node.wait_event("ready", timeout=30)["port"]
    base_store, base_rss = store_bytes(node.home), rss_kib(node.pid)
    peak = {"store": base_store, "rss": base_rss}
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            peak["store"] = max(peak["store"], store_bytes(node.home))
            peak["rss"] = max(peak["rss"], rss_kib(node.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.monotonic()
    out = h1.run([sys.executable, "tests/hostile.py", h2.ip, str(port), "flood",
                  "--seconds", str(seconds), "--size", "16000"], timeout=seconds + 60)
    elapsed = time.monotonic() - t0
    done.set()
    sampler.join()
    peak["store"] = max(peak["store"], store_bytes(node.home))
    node.stop()
    flood = json.loads(out.stdout.strip().splitlines()[-1]) if out.stdout.strip() else {}
    res = {"seconds": elapsed, "sent": flood.get("sent"), "acked": flood.get("acked"),
           "closed": flood.get("closed"), "store_growth": peak["store"] - base_store,
           "rss_growth_kib": peak["rss"] - base_rss, "rss_peak_kib": peak["rss"]}
    log(f"flood into {name}: {res}")
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", default="bench/out/trust.json")
    args = p.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    precompile()
    started = time.monotonic()
    with Lab(2) as lab:
        rounds: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
        for k in range(sizes["rounds"]):
            for checks in ("off", "on"):
                rounds[checks].append(one_round(lab, checks, sizes, k))
        limited = flood_into(lab, "bob-limited", DEFAULTS, sizes["flood_s"])
        lifted = flood_into(lab, "bob-lifted", LIFTED, sizes["flood_s"])
        mode, prefix = lab.mode, lab.prefix
    left = lab_namespaces_of(prefix)

    def med(checks: str, key: str, sub: str | None = None) -> float:
        vals = [r[key][sub] if sub else r[key] for r in rounds[checks]]
        return float(statistics.median(vals))

    figures = [
        Figure("one-way messages/s (stored, acked)", med("on", "rate"), med("off", "rate"),
               "msg/s", "no more than 5 % slower", better="higher",
               baseline_name="checks off"),
        Figure("round trip p50 (send -> delivered)", med("on", "rtt", "p50_us"),
               med("off", "rtt", "p50_us"), "us", "no more than 5 % slower",
               baseline_name="checks off"),
        Figure("round trip p99", med("on", "rtt", "p99_us"), med("off", "rtt", "p99_us"),
               "us", "", baseline_name="checks off"),
        Figure(f"store growth under a {sizes['flood_s']:g} s 16 kB flood",
               limited["store_growth"] / 2**20, lifted["store_growth"] / 2**20, "MiB",
               "under the burst + 5 msg/s x 16 kB (1.6 MiB + 80 kB/s)",
               baseline_name="limits lifted"),
        Figure("RSS growth under the flood", limited["rss_growth_kib"] / 1024,
               lifted["rss_growth_kib"] / 1024, "MiB", "bounded",
               baseline_name="limits lifted"),
    ]
    notes = [f"lab mode: {mode}; {sizes['rounds']} alternating rounds off/on, medians",
             f"limited flood: sent {limited['sent']}, stored {limited['acked']}, closed "
             f"after slow_down ignored: {limited['closed']}",
             f"lifted flood: sent {lifted['sent']}, stored {lifted['acked']}"]
    return finish("Trust: checks on the message path, strangers' floods", quick=args.quick,
                  elapsed=time.monotonic() - started, figures=figures, notes=notes,
                  left=left, json_path=args.json,
                  result={"rounds": rounds, "limited": limited, "lifted": lifted})


if __name__ == "__main__":
    sys.exit(main())
