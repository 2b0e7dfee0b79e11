"""The web window under load: a peer's message to the page's DOM beside the same message
to the headless `message` event; page load to usable with 10,000 messages stored; 1,000
msg/s into an open page (none lost, input latency); the page's memory after 100,000.

    python -m bench.bench_web            # full run (~3 minutes), as root (namespaces)
    python -m bench.bench_web --quick    # CI size (~40 s): 1,000 stored, 3 s of flood

Layout: a lab of two hosts. h1 runs `lanchat web --json --no-browser` (bob) and, beside
it in the same namespace, Chromium driven by Playwright (tests/web_driver.py); h2 runs
an in-process sending node (bench/_web_sender.py, alice). Every message carries its
send time (Unix seconds); the page stamps when its row enters the DOM (a
MutationObserver, `performance.timeOrigin + now()`), this process stamps when the
`message` event line arrives on bob's stdout. Both are the same machine's clock.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from typing import Any

from bench.common import (
    Figure,
    Lab,
    child_env,
    finish,
    lab_namespaces_of,
    percentile,
    read_json_line,
    start_py,
    stop_child,
)
from web_lab import Browser, browser_missing  # noqa: E402 (tests/, on the path via common)

PROBE_JS = """() => {
  window.bench = {dom: {}, keys: [], long: []};
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) bench.long.push([e.startTime, e.duration]);
  }).observe({type: 'longtask'});
  new MutationObserver((muts) => {
    const t = (performance.timeOrigin + performance.now()) / 1000;
    for (const m of muts) for (const n of m.addedNodes) {
      const tx = n.querySelector && n.querySelector('.text');
      if (tx && tx.textContent.startsWith('lat ')) bench.dom[tx.textContent.split(' ')[1]] = t;
    }
  }).observe(document.querySelector('#log'), {childList: true});
  document.querySelector('#input').addEventListener('keydown', (e) => {
    const t0 = e.timeStamp;
    requestAnimationFrame(() => bench.keys.push(performance.now() - t0));
  }, true);
  return true; }"""


class WebNode:
    """bob: `lanchat web --json` in h1, every stdout line stamped on arrival."""

    def __init__(self, lab: Lab) -> None:
        host = lab[0]
        home = lab.base_dir / "bob"
        self.proc: subprocess.Popen[str] = host.popen(
            [sys.executable, "-m", "lanchat", "--home", str(home), "--nick", "bob",
             "--port", "47800", "--no-mdns", "--no-beacon", "web", "--json", "--no-browser"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=child_env(), bufsize=1)
        self.cond = threading.Condition()
        self.url = ""
        self.lat: dict[str, tuple[float, float]] = {}  # index -> (sent, event read)
        self.counts: dict[str, int] = {}  # prefix -> message events seen
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.address = f"{host.ip}:47800"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            now = time.time()
            if '"event":"message"' in line:
                text = json.loads(line)["text"]
                prefix, index, t_send = text.split(" ", 2)
                with self.cond:
                    if prefix == "lat":
                        self.lat[index] = (float(t_send), now)
                    self.counts[prefix] = self.counts.get(prefix, 0) + 1
                    self.cond.notify_all()
            elif '"event":"web_ready"' in line:
                with self.cond:
                    self.url = json.loads(line)["url"]
                    self.cond.notify_all()

    def wait(self, pred: Any, timeout: float = 120.0) -> None:
        with self.cond:
            if not self.cond.wait_for(pred, timeout):
                raise TimeoutError("bob did not get there in time")

    def stop(self) -> None:
        if self.proc.poll() is None and self.proc.stdin is not None:
            self.proc.stdin.write("/quit\n")
            self.proc.stdin.flush()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def send(sender: subprocess.Popen[str], count: int, rate: float, prefix: str) -> dict[str, Any]:
    """Have alice send `count` broadcasts at `rate`/s; return her report."""
    assert sender.stdin is not None
    sender.stdin.write(json.dumps({"count": count, "rate": rate, "prefix": prefix}) + "\n")
    sender.stdin.flush()
    return read_json_line(sender, timeout=count / rate + 180, want="sent")


def load_ms(browser: Browser, url: str, runs: int) -> list[float]:
    """Navigation start to the page being usable (state, latest history, rendered)."""
    times = []
    for _ in range(runs):
        browser.call("open", url=url, timeout=60)
        times.append(float(browser.eval("() => Number(document.body.dataset.ready)")))
    return times


def page_count(browser: Browser) -> int:
    return int(browser.eval("() => lanchat.received"))


def wait_page(browser: Browser, count: int, timeout: float = 120.0) -> None:
    browser.wait("(n) => lanchat.received >= n", count, timeout=timeout)


def memory(browser: Browser) -> dict[str, float]:
    m = browser.call("metrics")
    rows = browser.eval("() => document.querySelectorAll('#log li').length")
    return {"heap_mib": m["JSHeapUsedSize"] / 2**20, "nodes": m["Nodes"], "rows": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default="bench/out/web.json")
    args = ap.parse_args(argv)
    why = browser_missing()
    if why:
        print(f"bench_web: skipped: {why}", file=sys.stderr)
        return 0
    q = args.quick
    n_lat = 30 if q else 300
    history = 1_000 if q else 10_000
    flood_s = 3 if q else 30
    flood_rate = 1_000
    total = 5_000 if q else 100_000
    started = time.monotonic()
    figures: list[Figure] = []
    notes: list[str] = []
    result: dict[str, Any] = {}
    lab = Lab(2)
    if lab.mode != "netns":
        lab.close()
        print("bench_web: skipped: the browser runs only inside a lab namespace",
              file=sys.stderr)
        return 0
    bob = sender = browser = None
    try:
        bob = WebNode(lab)
        bob.wait(lambda: bool(bob.url), 30)
        sender = start_py(lab[1], "bench._web_sender", "--home", str(lab.base_dir / "alice"),
                          "--ip", lab[1].ip, "--peer", bob.address)
        read_json_line(sender, timeout=30, want="ready")
        browser = Browser(lab[0])
        browser.call("open", url=bob.url, timeout=60)
        base = bob.url.split("?", 1)[0]

        # page load, empty history (the baseline), and its memory
        empty_load = load_ms(browser, base, 3)
        empty_mem = memory(browser)

        # a peer's message: to the DOM, and to the headless event
        browser.eval(PROBE_JS)
        seen = page_count(browser)
        send(sender, n_lat, 20.0, "lat")
        wait_page(browser, seen + n_lat)
        bob.wait(lambda: len(bob.lat) >= n_lat)
        dom = browser.eval("() => bench.dom")
        lat_dom, lat_evt = [], []
        for index, (t_send, t_event) in bob.lat.items():
            if index in dom:
                lat_dom.append((dom[index] - t_send) * 1000)
                lat_evt.append((t_event - t_send) * 1000)
        figures += [
            Figure("peer message -> page DOM, p50", percentile(lat_dom, 50),
                   percentile(lat_evt, 50), "ms", baseline_name="headless `message` event"),
            Figure("peer message -> page DOM, p99", percentile(lat_dom, 99),
                   percentile(lat_evt, 99), "ms", baseline_name="headless `message` event")]
        result["latency"] = {"dom_ms": lat_dom, "event_ms": lat_evt}

        # typing with nothing arriving (the baseline for the flood)
        keys = 20 if q else 100
        browser.call("type", selector="#input", text="x" * keys, delay=30,
                     timeout=keys * 0.2 + 60)
        idle_keys = browser.eval("() => bench.keys.splice(0)")
        browser.call("fill", selector="#input", text="")

        # 10,000 messages stored: the page loads only the latest page of them
        seen = page_count(browser)
        fill = history - n_lat
        send(sender, fill, 5_000.0, "fill")
        wait_page(browser, seen + fill, timeout=300)
        full_load = load_ms(browser, base, 3)
        figures.append(Figure(f"page load to usable, {history:,} messages stored (median)",
                              sorted(full_load)[1], sorted(empty_load)[1], "ms",
                              baseline_name="empty history"))
        result["load_ms"] = {"full": full_load, "empty": empty_load}

        # 1,000 msg/s into the open page, typing all along
        browser.eval(PROBE_JS)
        seen = page_count(browser)
        flood = flood_s * flood_rate
        counted = bob.counts.get("flood", 0)
        assert sender.stdin is not None
        sender.stdin.write(json.dumps({"count": flood, "rate": flood_rate,
                                       "prefix": "flood"}) + "\n")
        sender.stdin.flush()
        n_keys = int(flood_s * 1000 / 60)
        browser.call("type", selector="#input", text="y" * n_keys, delay=60,
                     timeout=flood_s * 3 + 60)
        report = read_json_line(sender, timeout=flood_s * 4 + 120, want="sent")
        wait_page(browser, seen + flood, timeout=180)
        got_page = page_count(browser) - seen
        bob.wait(lambda: bob.counts.get("flood", 0) - counted >= flood)
        flood_keys = browser.eval("() => bench.keys.splice(0)")
        long_tasks = browser.eval("() => bench.long.splice(0)")
        browser.call("fill", selector="#input", text="")
        figures.append(Figure(f"{flood_rate:,} msg/s for {flood_s} s: messages in the page",
                              got_page, flood, "msgs", better="higher",
                              baseline_name="sent"))
        figures.append(Figure(f"input latency p99 while {flood_rate:,} msg/s arrive",
                              percentile(flood_keys, 99), percentile(idle_keys, 99), "ms",
                              baseline_name="nothing arriving"))
        figures.append(Figure(f"input latency p50 while {flood_rate:,} msg/s arrive",
                              percentile(flood_keys, 50), percentile(idle_keys, 50), "ms",
                              baseline_name="nothing arriving"))
        result["flood"] = {"sender": report, "page": got_page, "keys_ms": flood_keys,
                           "idle_keys_ms": idle_keys, "long_tasks": long_tasks}

        # memory after 100,000 messages into the open page
        seen_total = n_lat + fill + flood
        rest = max(0, total - seen_total)
        seen = page_count(browser)
        send(sender, rest, 3_000.0, "more")
        wait_page(browser, seen + rest, timeout=300)
        full_mem = memory(browser)
        figures.append(Figure(f"page JS heap after {total:,} messages", full_mem["heap_mib"],
                              empty_mem["heap_mib"], "MiB", baseline_name="page just loaded"))
        figures.append(Figure(f"page DOM nodes after {total:,} messages", full_mem["nodes"],
                              empty_mem["nodes"], "nodes", baseline_name="page just loaded"))
        result["memory"] = {"full": full_mem, "empty": empty_mem}
        notes += [
            f"message rows kept in the page after {total:,}: {full_mem['rows']} (older ones "
            "reload from the store as you scroll up)",
            "DOM time: the MutationObserver callback after the row is appended (before "
            "paint); event time: the JSON line read from bob's stdout by this process",
            "input latency: keydown `timeStamp` to the next animation frame, keys typed "
            "by Playwright every 60 ms",
            f"flood: alice sent {report['count']:,} in {report['seconds']:.1f} s; "
            f"bob's stdout had {bob.counts.get('flood', 0) - counted:,}",
        ]
    finally:
        if browser is not None:
            browser.close()
        if sender is not None:
            stop_child(sender)
        if bob is not None:
            bob.stop()
        prefix = lab.prefix
        lab.close()
        left = lab_namespaces_of(prefix)
    return finish("Web window", quick=q, elapsed=time.monotonic() - started,
                  figures=figures, notes=notes, left=left, json_path=args.json, result=result)


if __name__ == "__main__":
    sys.exit(main())
