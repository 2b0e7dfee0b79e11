"""Foreign peers in the namespace lab, each figure beside a baseline from the same run:

- start to all three kinds listed: a `lanchat run --json` node starts while a lanchat node,
  localsendd and a Bonjour chat peer (tests/xmpp_peer.py) run; the time from its start to
  the moment it lists all three, beside the time to list the lanchat node alone;
- a 512 MiB file from lanchat to localsendd, beside localsendd to localsendd;
- messages per second and round trip to the Bonjour chat peer (which echoes), beside the
  same from lanchat to a lanchat node (an echo plugin), all driven through `run --json`.

    python -m bench.bench_interop [--quick] [--json bench/out/interop.json]

Everything runs inside tests/lab.py namespaces; nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from bench.common import Figure, finish, lab_namespaces_of, percentile  # noqa: E402
from interop_peers import LocalSendD, ScriptedXmppPeer, localsendd_venv  # noqa: E402
from lab import Lab, LanchatProc  # noqa: E402

MiB = 1 << 20
ECHO_PLUGIN = '''
from lanchat.hookspecs import hookimpl


@hookimpl
def lanchat_message_received(node, message):
    if message["text"].startswith("ping "):
        node.send(message["from"]["id"], "pong " + message["text"][5:])
'''


def _online_kinds(proc: LanchatProc) -> dict[str, float]:
    """First time each kind was listed online (from the event log)."""
    first: dict[str, float] = {}
    for e in proc.snapshot():
        if e["event"] in ("peer_joined", "peer_updated") and e["peer"].get("online"):
            first.setdefault(e["peer"].get("kind", "lanchat"), e["ts"])
    return first


def listed_times(lab: Lab, runs: int) -> tuple[list[float], list[float]]:
    """Start alice again and again while bob (lanchat), lsd and xmpp run."""
    alls: list[float] = []
    lanchat: list[float] = []
    h1 = lab.hosts[0]
    for i in range(runs):
        t0 = time.time()
        alice = h1.start_node(nick=f"alice{i}")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            kinds = _online_kinds(alice)
            if len(kinds) == 3:
                break
            alice.wait_event(None, timeout=max(0.1, deadline - time.monotonic()),
                             consume=False, since=len(alice.snapshot()))
        kinds = _online_kinds(alice)
        if len(kinds) == 3:
            alls.append(max(kinds.values()) - t0)
            lanchat.append(kinds["lanchat"] - t0)
        alice.stop()
    return alls, lanchat


def file_times(lab: Lab, lsd_b: LocalSendD, lsd_c: LocalSendD, alice: LanchatProc,
               size_mib: int) -> tuple[float | None, float | None]:
    """512 MiB (or `size_mib`) to lsd-b from alice, and from lsd-c to lsd-b."""
    src = lab.base_dir / "big.bin"
    with open(src, "wb") as fh:
        chunk = os.urandom(MiB)
        for _ in range(size_mib):
            fh.write(chunk)
    alice.wait_event("peer_joined", timeout=60, match={"peer": {"nick": "lsd-b"}},
                     consume=False)
    t0 = time.monotonic()
    alice.command(f"/file lsd-b {src}")
    alice.wait_event("file_done", timeout=600, direction="out")
    ours = time.monotonic() - t0
    (lsd_b.downloads / "big.bin").unlink(missing_ok=True)
    lsd_c.wait_device("lsd-b", timeout=60)
    envs = [f"{k}={v}" for k, v in lsd_c.env.items()]
    t0 = time.monotonic()
    done = lsd_c.host.run(["env", *envs, str(lsd_c.venv / "bin" / "localsendctl"), "send",
                           str(src), "--to", "lsd-b", "--wait", "--quiet"], timeout=900)
    theirs = time.monotonic() - t0 if done.returncode == 0 else None
    src.unlink(missing_ok=True)
    return ours, theirs


def chat_figures(alice: LanchatProc, peer: str, n_rtt: int, n_flood: int,
                 received: Any) -> tuple[list[float], float]:
    """Round trips (ping -> pong as a `message` event) and one-way messages per second
    (first send to the peer's count of N), both through alice's `run --json`."""
    rtts = []
    for i in range(n_rtt):
        t0 = time.monotonic()
        alice.command(f"/msg {peer} ping {i}")
        alice.wait_event("message", timeout=10, text=f"pong {i}")
        rtts.append(time.monotonic() - t0)
    t0 = time.monotonic()
    for i in range(n_flood):
        alice.command(f"/msg {peer} flood {i}")
    received(n_flood)
    return rtts, n_flood / (time.monotonic() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default="bench/out/interop.json")
    args = ap.parse_args(argv)
    runs, size, n_rtt, n_flood = (1, 64, 50, 500) if args.quick else (5, 512, 300, 5000)
    started = time.monotonic()
    venv = localsendd_venv()
    figures: list[Figure] = []
    notes: list[str] = []
    result: dict[str, Any] = {}
    with Lab(5) as lab:
        if lab.mode != "netns" or venv is None:
            print("bench_interop: needs the namespace lab and localsendd", file=sys.stderr)
            return 0
        h1, h2, h3, h4, h5 = lab.hosts
        bob = h2.start_node(nick="bob")
        (bob.home / "plugins").mkdir(parents=True, exist_ok=True)
        (bob.home / "plugins" / "echo.py").write_text(ECHO_PLUGIN)
        bob = bob.restart()
        lsd_b = LocalSendD(h3, venv, lab.base_dir, "lsd-b")
        xmpp = ScriptedXmppPeer(h4, "xena@h4", echo=True)

        alls, lanchat_only = listed_times(lab, runs)
        result["listed"] = {"all_three_s": alls, "lanchat_s": lanchat_only}
        figures.append(Figure("start to all three kinds listed (median)",
                              statistics.median(alls) if alls else None,
                              statistics.median(lanchat_only) if lanchat_only else None,
                              "s", baseline_name="the lanchat peer alone"))

        alice = h1.start_node(nick="alice")
        alice.wait_event("peer_joined", timeout=30, match={"peer": {"nick": "Xena"}})
        alice.wait_event("peer_joined", timeout=30, match={"peer": {"nick": "bob"}})
        alice.command("/msg Xena hello")  # the one-time unencrypted notice
        alice.wait_event("output", timeout=10)
        rtt_x, rate_x = chat_figures(alice, "Xena", n_rtt, n_flood,
                                     lambda n: xmpp.wait("count", timeout=120, n=n))
        def bob_received(n: int) -> None:
            bob.wait_event("message", timeout=120, text=f"flood {n - 1}")

        rtt_l, rate_l = chat_figures(alice, "bob", n_rtt, n_flood, bob_received)
        result["chat"] = {"xmpp_rtt_s": rtt_x, "lanchat_rtt_s": rtt_l,
                          "xmpp_rate": rate_x, "lanchat_rate": rate_l}
        figures.append(Figure("round trip to a Bonjour chat peer, p50",
                              percentile(rtt_x, 50) * 1e6, percentile(rtt_l, 50) * 1e6, "us",
                              baseline_name="lanchat to lanchat"))
        figures.append(Figure("round trip to a Bonjour chat peer, p99",
                              percentile(rtt_x, 99) * 1e6, percentile(rtt_l, 99) * 1e6, "us",
                              baseline_name="lanchat to lanchat"))
        figures.append(Figure("messages/s to a Bonjour chat peer (run --json)", rate_x,
                              rate_l, "msg/s", better="higher",
                              baseline_name="lanchat to lanchat"))

        lsd_c = LocalSendD(h5, venv, lab.base_dir, "lsd-c")
        ours, theirs = file_times(lab, lsd_b, lsd_c, alice, size)
        result["file"] = {"size_mib": size, "lanchat_s": ours, "localsendd_s": theirs}
        figures.append(Figure(f"{size} MiB file to localsendd",
                              size / ours if ours else None,
                              size / theirs if theirs else None, "MiB/s", better="higher",
                              baseline_name="localsendd to localsendd"))
        for d in (lsd_b, lsd_c):
            d.stop()
            if d.fatal:
                notes.append(f"{d.alias} fell back to a subnet scan and was stopped")
        xmpp.stop()
        prefix = lab.prefix
    notes += [
        "listed: from starting `lanchat run --json` to the event that lists the last of a "
        "lanchat node, localsendd and a scripted XEP-0174 peer online; baseline: to the "
        f"lanchat node's event. {runs} starts, medians.",
        "round trip: `/msg PEER ping i` on alice's stdin to the `pong i` message event; the "
        "Bonjour peer (tests/xmpp_peer.py) echoes in Python, bob echoes with a plugin. "
        "Rate: N messages written to stdin back to back until the peer has N; lanchat's are "
        "durable (stored, acked), XMPP has no receipts.",
        "file: `/file` to the `file_done` event (localsendd has written it) beside "
        "`localsendctl send --wait` between two localsendd (which hashes the file first).",
    ]
    return finish("Interop", quick=args.quick, elapsed=time.monotonic() - started,
                  figures=figures, notes=notes, left=lab_namespaces_of(prefix),
                  json_path=args.json, result=result)


if __name__ == "__main__":
    sys.exit(main())
