"""Shared helpers for the benchmarks: the lab, machine facts, statistics, tables, RSS.

Network safety: every benchmark process runs inside a namespace of tests/lab.py's `Lab`
(or, where namespaces cannot be made, on 127.0.0.1 in the lab's loopback mode). Nodes get
`--no-mdns --no-beacon` and an explicit address; nothing here opens a socket on the root
namespace's interfaces.
"""

from __future__ import annotations

import json
import os
import platform
import select
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent

# The benchmarks' floods run between peers that have not verified each other, and the
# memory benchmark's swarm puts 20 fresh keys on one address: a stranger's default budget
# (lanchat/limits.py) would measure the budget, not the node. Every child inherits this;
# bench_trust.py sets the limits it measures.
for _name in ("STRANGER_MSGS_PER_S", "STRANGER_MSG_BURST", "STRANGER_OFFERS_PER_MIN",
              "NEW_IDS_PER_ADDRESS_PER_MIN"):
    os.environ.setdefault(f"LANCHAT_LIMIT_{_name}", "1e9")
TESTS_DIR = REPO_ROOT / "tests"
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

from lab import Host, Lab, lab_namespaces  # noqa: E402  (tests/lab.py)

NO_DISCOVERY = ("--no-mdns", "--no-beacon")

__all__ = ["Figure", "Host", "Lab", "NO_DISCOVERY", "REPO_ROOT", "chat_frame_size",
           "child_env", "finish", "lab_namespaces_of", "machine_info", "markdown_table",
           "percentile", "precompile",
           "read_json_line", "rss_kib", "start_py", "stop_child", "summary_us"]


# --------------------------------------------------------------------------- machine


def precompile(tree: Path = REPO_ROOT) -> None:
    """Write lanchat's bytecode (__pycache__), as `pip install` does for an installed
    package: start-up figures then measure lanchat, not the compiler. (The environment
    here sets PYTHONDONTWRITEBYTECODE, so an editable checkout would otherwise compile
    every module at every start, while the baselines' site-packages are compiled.)"""
    import compileall

    compileall.compile_dir(str(tree / "lanchat"), quiet=1)


def machine_info() -> dict[str, Any]:
    """nproc, CPU model, memory, Python, SQLite, OpenSSL and kernel of this machine."""
    import sqlite3
    import ssl

    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "mem_gib": round(mem_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "openssl": ssl.OPENSSL_VERSION,
        "kernel": platform.release(),
        "date": time.strftime("%Y-%m-%d"),
    }


# --------------------------------------------------------------------------- stats


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100), nearest-rank on a sorted copy; nan when empty."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def summary_us(samples_s: Sequence[float]) -> dict[str, float]:
    """p50 / p90 / p99 / max in microseconds of samples given in seconds."""
    return {"n": len(samples_s),
            "p50_us": round(percentile(samples_s, 50) * 1e6, 1),
            "p90_us": round(percentile(samples_s, 90) * 1e6, 1),
            "p99_us": round(percentile(samples_s, 99) * 1e6, 1),
            "max_us": round(max(samples_s) * 1e6, 1) if samples_s else float("nan")}


# --------------------------------------------------------------------------- frames


def chat_frame_size(text: str) -> int:
    """Bytes on the wire (length prefix + JSON) of one lanchat chat frame with `text`."""
    from lanchat.node import new_message_id
    from lanchat.protocol import Chat, encode

    return len(encode(Chat(new_message_id(), time.time(), text, False, "alice")))


def lab_namespaces_of(prefix: str) -> list[str]:
    """Namespaces of one lab (by its prefix) that still exist: empty after a clean close."""
    return [n for n in lab_namespaces() if n.startswith(prefix)]


# --------------------------------------------------------------------------- processes


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for benchmark children: the repo on the path, unbuffered output."""
    env = dict(os.environ)
    env.pop("LANCHAT_HOME", None)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    if extra:
        env.update(extra)
    return env


def start_py(host: Host, module: str, *args: str,
             extra_env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`python -m <module> args` inside the host's namespace, stdin/stdout piped (text)."""
    return host.popen([sys.executable, "-m", module, *args], stdin=subprocess.PIPE,
                      stdout=subprocess.PIPE, stderr=None, env=child_env(extra_env),
                      bufsize=1)


_PENDING: dict[int, bytearray] = {}


def read_json_line(proc: subprocess.Popen[str], timeout: float,
                   want: str | None = None) -> dict[str, Any]:
    """The next JSON object line on the child's stdout (skipping other lines); with `want`,
    the next one whose "kind" is `want`. Raises TimeoutError / RuntimeError.

    Reads the pipe's file descriptor into its own buffer: select() cannot see lines that
    a buffered text reader already holds, so mixing the two would hang."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buf = _PENDING.setdefault(proc.pid, bytearray())
    deadline = time.monotonic() + timeout
    while True:
        while b"\n" in buf:
            at = buf.index(b"\n")
            line = bytes(buf[:at]).decode(errors="replace").strip()
            del buf[:at + 1]
            if line.startswith("{"):
                obj = json.loads(line)
                if want is None or obj.get("kind") == want:
                    return obj
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no {want or 'JSON'} line from pid {proc.pid} in {timeout} s")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            raise RuntimeError(f"pid {proc.pid} ended (rc={proc.poll()}) before {want}")
        buf += chunk


def stop_child(proc: subprocess.Popen[str], timeout: float = 10.0) -> None:
    """Close the child's stdin (it exits cleanly), then kill it by pid if it lingers."""
    if proc.stdin is not None:
        try:
            proc.stdin.close()
        except OSError:
            pass
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def rss_kib(pid: int) -> int:
    """VmRSS of a process in KiB (0 if gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# --------------------------------------------------------------------------- results


@dataclass
class Figure:
    """One row of the results table."""

    name: str
    lanchat: float | None
    baseline: float | None
    unit: str
    goal: str = ""
    # "lower" if smaller is better (latency, memory), "higher" for rates
    better: str = "lower"
    note: str = ""
    baseline_name: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if not self.lanchat or not self.baseline:
            return None
        return self.lanchat / self.baseline

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ratio"] = self.ratio
        return d


def _fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "n/a"
    if unit == "msg/s":
        return f"{v:,.0f} msg/s"
    if unit == "us":
        return f"{v:,.0f} µs"
    if unit == "MiB":
        return f"{v:,.1f} MiB"
    return f"{v:,.3g} {unit}"


def markdown_table(figures: Sequence[Figure]) -> str:
    """figure | lanchat | baseline | ratio | goal, as Markdown."""
    lines = ["| figure | lanchat | baseline | ratio | goal |",
             "|---|---:|---:|---:|---|"]
    for f in figures:
        base = _fmt(f.baseline, f.unit)
        if f.baseline_name and f.baseline is not None:
            base = f"{base} ({f.baseline_name})"
        ratio = "n/a" if f.ratio is None else f"{f.ratio:.2f}x"
        lines.append(f"| {f.name} | {_fmt(f.lanchat, f.unit)} | {base} | {ratio} | "
                     f"{f.goal} |")
    return "\n".join(lines)


def finish(title: str, *, quick: bool, elapsed: float, figures: Sequence[Figure],
           notes: Sequence[str], left: Sequence[str], json_path: str,
           result: dict[str, Any]) -> int:
    """Print a benchmark's section (machine, table, notes) and write its JSON; return 0."""
    print(f"\n## {title} ({'quick' if quick else 'full'} run, {elapsed:.0f} s)\n")
    m = machine_info()
    print(f"machine: {m['nproc']} x {m['cpu']}, {m['mem_gib']} GiB, Python {m['python']}, "
          f"SQLite {m['sqlite']}, {m['openssl']}, kernel {m['kernel']}\n")
    print(markdown_table(figures))
    print()
    for note in notes:
        print(f"- {note}")
    if left:
        print(f"\nWARNING: lab namespaces left behind: {left}", file=sys.stderr)
    out = Path(json_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": m, "quick": quick, "elapsed_s": elapsed, **result,
                               "figures": [f.to_dict() for f in figures], "notes": list(notes)},
                              indent=2, default=str))
    print(f"\nJSON: {out}", file=sys.stderr)
    return 0
