"""Run every benchmark in the lab and write one Markdown report and one JSON file.

    python -m bench.run_all            # full figures (~10 minutes), as root
    python -m bench.run_all --quick    # CI size (~3 minutes); reports, asserts nothing

Each benchmark runs as its own process with a time limit; one that fails or overruns is
reported as such and the others still run. Output: bench/out/summary.md and
bench/out/summary.json (each benchmark's own JSON is beside them).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OUT = Path("bench/out")


@dataclass(frozen=True)
class Bench:
    """One benchmark: how to run it full and quick, and where its JSON lands."""

    name: str
    full: tuple[str, ...]
    quick: tuple[str, ...]
    json: str
    limit_s: float


BENCHES = (
    Bench("messaging", ("-m", "bench.bench_messaging"), ("-m", "bench.bench_messaging",
          "--quick"), "messaging.json", 300),
    Bench("discovery", ("-m", "bench.bench_discovery"), ("-m", "bench.bench_discovery",
          "--quick"), "discovery.json", 400),
    Bench("scale", ("-m", "bench.bench_scale"), ("-m", "bench.bench_scale", "--quick"),
          "scale.json", 400),
    Bench("files", ("-m", "bench.bench_files", "--json", "bench/out/files.json"),
          ("-m", "bench.bench_files", "--size-mib", "128", "--no-resume", "--json",
           "bench/out/files.json"), "files.json", 600),
    Bench("shell", ("-m", "bench.bench_shell"),
          ("-m", "bench.bench_shell", "--runs", "2", "--keys", "40", "--messages", "10",
           "--writers", "erase"), "", 300),
    Bench("shell_start", ("-m", "bench.bench_shell_start"),
          ("-m", "bench.bench_shell_start", "--runs", "3", "--stored", "2000"), "", 200),
    Bench("interop", ("-m", "bench.bench_interop"), ("-m", "bench.bench_interop", "--quick"),
          "interop.json", 300),
    Bench("web", ("-m", "bench.bench_web"), ("-m", "bench.bench_web", "--quick"), "web.json",
          400),
    Bench("failover", ("-m", "bench.bench_failover"),
          ("-m", "bench.bench_failover", "--quick", "--runs", "1"), "failover.json", 300),
    Bench("stall", ("-m", "bench.bench_stall"), ("-m", "bench.bench_stall", "--quick"),
          "stall.json", 300),
)


def run(bench: Bench, quick: bool) -> dict[str, Any]:
    """Run one benchmark; return its status, output and JSON."""
    args = bench.quick if quick else bench.full
    limit = bench.limit_s / (2 if quick else 1)
    start = time.monotonic()
    try:
        done = subprocess.run([sys.executable, *args], capture_output=True, text=True,
                              timeout=limit)
        status = "ok" if done.returncode == 0 else f"exit {done.returncode}"
        stdout, stderr = done.stdout, done.stderr
    except subprocess.TimeoutExpired as exc:
        status = f"over its {limit:.0f} s limit"
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        stderr = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
    data: Any = None
    if bench.json and (OUT / bench.json).exists() and status == "ok":
        data = json.loads((OUT / bench.json).read_text())
    return {"name": bench.name, "status": status, "seconds": round(time.monotonic() - start, 1),
            "command": "python " + " ".join(args), "report": _tables(stdout),
            "stderr_tail": stderr.splitlines()[-15:], "data": data}


def _tables(stdout: str) -> str:
    """The Markdown tables and notes a benchmark printed (its progress lines dropped)."""
    keep = [line for line in stdout.splitlines() if not line.startswith("[")]
    text = "\n".join(keep).strip()
    if text and not text.lstrip().startswith(("#", "|")):
        text = "```\n" + text + "\n```"
    return text


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks; exit 0 even when figures miss their goals."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="CI size; reports, asserts nothing")
    ap.add_argument("--only", default="", help="comma-separated names to run")
    args = ap.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    wanted = {n for n in args.only.split(",") if n}
    results = []
    for bench in BENCHES:
        if wanted and bench.name not in wanted:
            continue
        print(f"[bench] {bench.name} ...", flush=True)
        result = run(bench, args.quick)
        print(f"[bench] {bench.name}: {result['status']} in {result['seconds']} s", flush=True)
        results.append(result)
    mode = "quick" if args.quick else "full"
    lines = [f"# lanchat benchmarks ({mode}, {time.strftime('%Y-%m-%d %H:%M')})", ""]
    for r in results:
        lines += [f"## {r['name']}: {r['status']} ({r['seconds']} s)", "",
                  f"`{r['command']}`", "", r["report"] or "(no table)", ""]
        if r["status"] != "ok":
            lines += ["```", *r["stderr_tail"], "```", ""]
    (OUT / "summary.md").write_text("\n".join(lines))
    (OUT / "summary.json").write_text(json.dumps({"mode": mode, "results": results},
                                                 indent=1, default=str))
    print("\n".join(lines))
    print(f"wrote {OUT / 'summary.md'} and {OUT / 'summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
