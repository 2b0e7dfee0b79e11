"""File transfer throughput in the namespace lab: lanchat beside http.server + curl and a raw
TCP copy, over veth (two hosts) and loopback (one namespace); CPU seconds per GiB; the time
a resume takes to restart. Prints a table and writes JSON. Nothing is asserted.

    sudo python3 bench/bench_files.py [--size-mib 1024] [--runs 1] [--json out.json]
        [--tools raw,http,lanchat] [--links veth,loopback] [--no-resume] [--profile DIR]

LANCHAT_BENCH_TREE=DIR runs the lanchat nodes from another checkout (DIR holds its
`lanchat` package), to compare before and after on the same machine in the same minute.
CPU is counted per side (sender, receiver) as well as in total. `--profile DIR` records
both lanchat processes while the file moves: py-spy collapsed stacks (Python and native
frames) or, with `--profiler perf`, perf samples with kernel frames.

Everything runs inside lab namespaces (tests/lab.py); nothing touches a real interface.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from lab import Lab, LanchatProc  # noqa: E402
from lanchat.protocol import FILE_HASHES  # noqa: E402
from lanchat.transfer.hashing import new_hasher  # noqa: E402

MiB = 1 << 20
GiB = 1 << 30
NO_DISCOVERY = ("--no-mdns", "--no-beacon")
CLK = os.sysconf("SC_CLK_TCK")
HTTP_PORT = 8765
RAW_PORT = 8766
DOWNLOADS = Path("/nonexistent")  # set in main: on the tmpfs, like every other destination
TMPFS_SIZE = "3500m"

SHIM = (
    "import os, sys\n"
    "if os.environ.get('LANCHAT_BENCH_TREE'):  # compare another checkout's code\n"
    "    sys.path.insert(0, os.environ['LANCHAT_BENCH_TREE'])\n"
    "import lanchat.plugins as p\n"
    "if 'lanchat.transfer.commands' not in p.DEFAULT_PLUGINS:  # a checkout before transfer\n"
    "    import lanchat.headless as h, lanchat.transfer as t  # was built in: add it there\n"
    "    p.DEFAULT_PLUGINS = (*p.DEFAULT_PLUGINS, 'lanchat.transfer.commands')\n"
    "    _open = h.open_node\n"
    "    def open_node(config, plugins=None):\n"
    "        node = _open(config, plugins)\n"
    "        t.attach(node)\n"
    "        return node\n"
    "    h.open_node = open_node\n"
    "from lanchat.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)

RAW_SERVER = """
import socket, sys, os
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1)
print("ready", flush=True)
c, _ = s.accept()
with open(sys.argv[3], "rb") as f:
    buf = bytearray(4 << 20); v = memoryview(buf)
    while n := f.readinto(buf):
        c.sendall(v[:n])
c.close()
"""

TLS_SERVER = """
import socket, sys
from pathlib import Path
from lanchat.identity import Identity
from lanchat.tls import tls_server_context
ident = Identity.load_or_create(Path(sys.argv[4]))
ctx = tls_server_context(str(ident.cert_path), str(ident.key_path))
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1)
print("ready", flush=True)
raw, _ = s.accept()
raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
c = ctx.wrap_socket(raw, server_side=True)
with open(sys.argv[3], "rb", buffering=0) as f:
    buf = bytearray(1 << 20); v = memoryview(buf)
    while n := f.readinto(buf):
        c.sendall(v[:n])
c.close()
"""

TLS_CLIENT = """
import os, socket, sys
from lanchat.tls import client_context
raw = socket.create_connection((sys.argv[1], int(sys.argv[2])))
raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
c = client_context().wrap_socket(raw)
buf = bytearray(1 << 20); v = memoryview(buf)
fd = os.open(sys.argv[3], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
while True:  # fill the buffer (one TLS record per recv), then one write
    got = 0
    while got < len(buf) and (k := c.recv_into(v[got:])):
        got += k
    if not got:
        break
    os.write(fd, v[:got])
os.close(fd)
"""

RAW_CLIENT = """
import socket, sys, resource, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])))
buf = bytearray(1 << 20); v = memoryview(buf)
with open(sys.argv[3], "wb") as f:
    while n := c.recv_into(buf):
        f.write(v[:n])
"""


def cpu_of(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def children_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def make_file(path: Path, size: int) -> dict[str, str]:
    """Write the payload; return its digest by each algorithm lanchat may verify with."""
    block = os.urandom(MiB)
    hashers = {alg: new_hasher(alg) for alg in FILE_HASHES}
    with open(path, "wb") as fh:
        for i in range(size // MiB):
            chunk = block[i % 11:] + block[:i % 11]
            fh.write(chunk)
            for h in hashers.values():
                h.update(chunk)
    return {alg: h.hexdigest() for alg, h in hashers.items()}


def lanchat_pair(lab: Lab, loopback: bool) -> tuple[LanchatProc, LanchatProc]:
    lab.lanchat_cmd = [sys.executable, "-c", SHIM]
    h1, h2 = lab.hosts[0], lab.hosts[0 if loopback else 1]
    bob = h2.start_node(*NO_DISCOVERY, "--downloads", str(DOWNLOADS), nick="bob", port=47810)
    bob.wait_event("ready")
    addr = "127.0.0.1" if loopback else h2.ip
    alice = h1.start_node(*NO_DISCOVERY, "--peer", f"{addr}:{bob.port}", nick="alice",
                          port=47811)
    alice.wait_event("peer_joined", peer={"nick": "bob"})
    bob.wait_event("peer_joined", peer={"nick": "alice"})
    return alice, bob


def py_spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """Record collapsed stacks of `pid` until it is stopped (SIGINT)."""
    return subprocess.Popen(["py-spy", "record", "--native", "--threads", "--rate", "200",
                             "--format", "raw", "-p", str(pid), "-o", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def perf(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """Record on-CPU samples (user and kernel) of `pid` until it is stopped (SIGINT)."""
    return subprocess.Popen(["perf", "record", "-F", "999", "-g", "-p", str(pid), "-o",
                             str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def bench_lanchat(lab: Lab, src: Path, digests: dict[str, str], loopback: bool,
                  profile: Path | None = None, profiler: str = "py-spy") -> dict[str, Any]:
    alice, bob = lanchat_pair(lab, loopback)
    spies: list[subprocess.Popen[bytes]] = []
    try:
        # CPU from before the offer: the sender's hashing ahead (while bob decides) counts
        send0, recv0 = cpu_of(alice.pid), cpu_of(bob.pid)
        alice.command(f"/file bob {src}")
        tid = alice.wait_event("output")["data"]["transfer"]
        bob.wait_event("file_offer", transfer=tid)
        if profile is not None:
            profile.mkdir(parents=True, exist_ok=True)
            tag = "loopback" if loopback else "veth"
            if profiler == "perf":
                spies = [perf(alice.pid, profile / f"sender-{tag}.perf.data"),
                         perf(bob.pid, profile / f"receiver-{tag}.perf.data")]
            else:
                spies = [py_spy(alice.pid, profile / f"sender-{tag}.txt"),
                         py_spy(bob.pid, profile / f"receiver-{tag}.txt")]
            time.sleep(1.0)
        t0 = time.monotonic()
        bob.command(f"/accept {tid}")
        done = bob.wait_event("file_done", transfer=tid, timeout=600)
        alice.wait_event("file_done", transfer=tid, timeout=60)
        elapsed = time.monotonic() - t0
        send, recv = cpu_of(alice.pid) - send0, cpu_of(bob.pid) - recv0
        alg = done.get("hash", "sha256")  # an older checkout (LANCHAT_BENCH_TREE) has no field
        assert done.get("digest", done["sha256"]) == digests[alg], "digest mismatch in benchmark"
        Path(done["path"]).unlink()
        return {"seconds": elapsed, "cpu_s": send + recv, "sender_cpu_s": send,
                "receiver_cpu_s": recv, "hash": alg}
    finally:
        for spy in spies:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        alice.stop()
        bob.stop()
        for p in (alice.home, bob.home):
            subprocess.run(["rm", "-rf", str(p)])


def bench_resume(lab: Lab, src: Path, digests: dict[str, str]) -> dict[str, Any]:
    """Kill the receiver at ~40 %, restart it: time to the first new bytes, and to done."""
    alice, bob = lanchat_pair(lab, loopback=False)
    size = src.stat().st_size
    try:
        alice.command(f"/file bob {src}")
        tid = alice.wait_event("output")["data"]["transfer"]
        bob.wait_event("file_offer", transfer=tid)
        bob.command(f"/accept {tid}")
        bob.wait_event("file_progress", transfer=tid, timeout=60,
                       pred=lambda e: e["done"] >= size * 0.4)
        bob.kill(signal.SIGKILL)
        bob.wait_exit(10)
        kept = (DOWNLOADS / f"{src.name}.part").stat().st_size
        t0 = time.monotonic()
        bob = bob.restart()
        bob.wait_event("ready", timeout=30)
        t_ready = time.monotonic() - t0
        bob.wait_event("file_progress", transfer=tid, timeout=60,
                       pred=lambda e: e["done"] > kept)
        t_moving = time.monotonic() - t0
        done = bob.wait_event("file_done", transfer=tid, timeout=600)
        t_done = time.monotonic() - t0
        assert done.get("digest", done["sha256"]) == digests[done.get("hash", "sha256")]
        return {"kept_mib": kept / MiB, "restart_to_ready_s": t_ready,
                "restart_to_new_bytes_s": t_moving, "restart_to_done_s": t_done}
    finally:
        alice.stop()
        bob.stop()


def bench_http(lab: Lab, src: Path, dest: Path, loopback: bool) -> dict[str, Any]:
    h1, h2 = lab.hosts[0], lab.hosts[0 if loopback else 1]
    ip = "127.0.0.1" if loopback else h1.ip
    server = h1.popen([sys.executable, "-m", "http.server", str(HTTP_PORT), "--bind", ip,
                       "--directory", str(src.parent)], stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if h2.run(["curl", "-s", "-o", "/dev/null", f"http://{ip}:{HTTP_PORT}/"]
                      ).returncode == 0:
                break
            time.sleep(0.05)
        cpu0, ccpu0 = cpu_of(server.pid), children_cpu()
        t0 = time.monotonic()
        h2.run(["curl", "-s", "-o", str(dest), f"http://{ip}:{HTTP_PORT}/{src.name}"],
               check=True, timeout=600)
        elapsed = time.monotonic() - t0
        cpu = cpu_of(server.pid) - cpu0 + children_cpu() - ccpu0
        return {"seconds": elapsed, "cpu_s": cpu}
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(10)
        dest.unlink(missing_ok=True)


def bench_raw(lab: Lab, src: Path, dest: Path, loopback: bool,
              tls: bool = False) -> dict[str, Any]:
    """One stream of the file, plain TCP or (tls) Python TLS 1.3 with lanchat's contexts."""
    h1, h2 = lab.hosts[0], lab.hosts[0 if loopback else 1]
    ip = "127.0.0.1" if loopback else h1.ip
    server_code, client_code = (TLS_SERVER, TLS_CLIENT) if tls else (RAW_SERVER, RAW_CLIENT)
    server = h1.popen([sys.executable, "-c", server_code, ip, str(RAW_PORT), str(src),
                       str(dest.parent / "tls-home")], stdout=subprocess.PIPE)
    try:
        assert server.stdout is not None
        server.stdout.readline()
        cpu0, ccpu0 = cpu_of(server.pid), children_cpu()
        t0 = time.monotonic()
        h2.run([sys.executable, "-c", client_code, ip, str(RAW_PORT), str(dest)], check=True,
               timeout=600)
        elapsed = time.monotonic() - t0
        server_cpu = cpu_of(server.pid) - cpu0
        cpu = server_cpu + children_cpu() - ccpu0
        return {"seconds": elapsed, "cpu_s": cpu}
    finally:
        server.wait(10)
        dest.unlink(missing_ok=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--json", type=Path, default=Path("bench_files.json"))
    parser.add_argument("--tools", default="raw,tls,http,lanchat",
                        help="comma-separated subset of raw,tls,http,lanchat")
    parser.add_argument("--links", default="veth,loopback",
                        help="comma-separated subset of veth,loopback")
    parser.add_argument("--no-resume", action="store_true", help="skip the resume timing")
    parser.add_argument("--profile", type=Path, default=None,
                        help="write profiles of the lanchat runs here")
    parser.add_argument("--profiler", choices=("py-spy", "perf"), default="py-spy",
                        help="py-spy: Python and native stacks (wall clock, slows the run); "
                        "perf: on-CPU samples with kernel frames (perf report -i FILE)")
    args = parser.parse_args()
    size = args.size_mib * MiB
    results: dict[str, Any] = {"size_mib": args.size_mib, "cpus": os.cpu_count(), "rows": []}
    with tempfile.TemporaryDirectory(prefix="lanchat-bench-") as tmp:
        # source, homes and every destination on a tmpfs: the disk here costs ~2 CPU-s/GiB
        # of writeback and would hide the network and crypto figures
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", tmp],
                       check=True)
        try:
            with Lab(2, mode="netns", base_dir=Path(tmp) / "lab") as lab:
                run_all(args, size, results, Path(tmp), lab)
        finally:
            subprocess.run(["umount", "-l", tmp])
    report(results, args.json)
    return 0


def run_all(args: argparse.Namespace, size: int, results: dict[str, Any], tmp: Path,
            lab: Lab) -> None:
    global DOWNLOADS
    DOWNLOADS = tmp / "downloads"
    src = tmp / "payload.bin"
    digests = make_file(src, size)
    dest = tmp / "copy.bin"
    links, tools = args.links.split(","), args.tools.split(",")
    # run-major: each run measures every tool once, so a ratio compares one run's figures
    for link, loopback in (("veth", False), ("loopback", True)):
        if link not in links:
            continue
        for run in range(args.runs):
            for key, name, fn in (
                    ("raw", "raw TCP copy", lambda lb: bench_raw(lab, src, dest, lb)),
                    ("tls", "Python TLS 1.3 stream",
                     lambda lb: bench_raw(lab, src, dest, lb, True)),
                    ("http", "http.server+curl", lambda lb: bench_http(lab, src, dest, lb)),
                    ("lanchat", "lanchat",
                     lambda lb: bench_lanchat(lab, src, digests, lb, args.profile,
                                              args.profiler))):
                if key not in tools:
                    continue
                r = fn(loopback)
                label = f"{name} (TLS+{r['hash']})" if "hash" in r else name
                row = {"link": link, "tool": label, "key": key, "run": run,
                       "mib_s": size / MiB / r["seconds"],
                       "cpu_s_per_gib": r["cpu_s"] / (size / GiB), **r}
                results["rows"].append(row)
                if "sender_cpu_s" in r:
                    row["sender_cpu_s_per_gib"] = r["sender_cpu_s"] / (size / GiB)
                    row["receiver_cpu_s_per_gib"] = r["receiver_cpu_s"] / (size / GiB)
                print(f"{link:<9} {label:<24} {row['mib_s']:8.0f} MiB/s "
                      f"{row['cpu_s_per_gib']:6.2f} CPU-s/GiB{_sides(row)}", flush=True)
    if not args.no_resume:
        results["resume"] = bench_resume(lab, src, digests)


def _sides(row: dict[str, Any]) -> str:
    if "sender_cpu_s_per_gib" not in row:
        return ""
    return (f" (sender {row['sender_cpu_s_per_gib']:.2f}, "
            f"receiver {row['receiver_cpu_s_per_gib']:.2f})")


RATIOS = (  # (what, lanchat figure, baseline tool, baseline figure)
    ("MiB/s / Python TLS 1.3 stream", "mib_s", "tls", "mib_s"),
    ("MiB/s / http.server+curl", "mib_s", "http", "mib_s"),
    ("CPU-s/GiB / http.server+curl (lower is better)", "cpu_s_per_gib", "http",
     "cpu_s_per_gib"),
)


def run_ratios(rows: list[dict[str, Any]]) -> dict[tuple[str, str], list[float]]:
    """lanchat / baseline within each run (the same minute), per link."""
    out: dict[tuple[str, str], list[float]] = {}
    by_run = {(r["link"], r["run"], r["key"]): r for r in rows}
    for (link, run, key), row in sorted(by_run.items()):
        if key != "lanchat":
            continue
        for what, mine, base_key, theirs in RATIOS:
            base = by_run.get((link, run, base_key))
            if base is not None and base[theirs] > 0:
                out.setdefault((link, what), []).append(row[mine] / base[theirs])
    return out


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def report(results: dict[str, Any], path: Path) -> None:
    print()
    print(f"{'link':<9} {'tool':<24} {'MiB/s':>8} {'CPU-s/GiB':>10}")
    for row in results["rows"]:
        print(f"{row['link']:<9} {row['tool']:<24} {row['mib_s']:8.0f} "
              f"{row['cpu_s_per_gib']:10.2f}{_sides(row)}")
    ratios = run_ratios(results["rows"])
    results["ratios"] = {f"{link}: {what}": v for (link, what), v in ratios.items()}
    for (link, what), values in sorted(ratios.items()):
        shown = ", ".join(f"{v:.2f}" for v in values)
        print(f"{link:<9} {what:<44} {_median(values):5.2f}x (runs: {shown})")
    r = results.get("resume")
    if r:
        print(f"resume after SIGKILL of the receiver ({r['kept_mib']:.0f} MiB kept): ready "
              f"{r['restart_to_ready_s']:.2f} s, new bytes {r['restart_to_new_bytes_s']:.2f} s, "
              f"done {r['restart_to_done_s']:.2f} s after the restart")
    path.write_text(json.dumps(results, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
