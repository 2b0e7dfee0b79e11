"""Start-up time of `lanchat run --json`, measured inside one lab namespace.

    python -m bench._scale_startup --base DIR --runs N

Times, all from inside the namespace (so `ip netns exec` is not counted):
  cold: exec of `python -m lanchat --home NEW --no-mdns --no-beacon --port 0 run --json`
        (a fresh home: key pair and database created) -> its `ready` line on stdout;
  warm: the same with one home used again (key and database exist);
  exit: closing its stdin -> process exit (warm runs);
  pass: exec of `python -c pass` -> exit;
  imports: exec of `python -c "import lanchat.cli, lanchat.headless, lanchat.node"` -> exit;
  importtime: one `python -X importtime` run of the warm command, top cumulative imports.
Prints one JSON line {"kind": "startup", ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

clock = time.perf_counter


def lanchat_argv(home: Path) -> list[str]:
    return [sys.executable, "-m", "lanchat", "--home", str(home), "--nick", "starter",
            "--no-mdns", "--no-beacon", "--port", "0", "run", "--json"]


def time_to_ready(argv: list[str], env: dict[str, str],
                  stderr: Any = subprocess.DEVNULL) -> tuple[float, float, float]:
    """(exec -> ready line, ready event ts - exec wall time, stdin close -> exit)."""
    wall0 = time.time()
    t0 = clock()
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                         text=True, env=env)
    assert p.stdout is not None and p.stdin is not None
    ready_s = float("nan")
    ready_ts = float("nan")
    for line in p.stdout:
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if ev.get("event") == "ready":
            ready_s = clock() - t0
            ready_ts = float(ev.get("ts", "nan")) - wall0
            break
    t1 = clock()
    p.stdin.close()
    p.stdout.read()
    p.wait(30)
    exit_s = clock() - t1
    return ready_s, ready_ts, exit_s


def time_exit(argv: list[str], env: dict[str, str]) -> float:
    t0 = clock()
    subprocess.run(argv, env=env, check=True, stdin=subprocess.DEVNULL)
    return clock() - t0


def importtime_top(stderr: str, n: int = 12) -> list[dict[str, Any]]:
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        parts = line[len("import time:"):].split("|")
        if len(parts) != 3:
            continue
        name = parts[2].rstrip()
        depth = (len(name) - len(name.lstrip())) // 2
        rows.append({"module": name.strip(), "self_us": int(parts[0]),
                     "cumulative_us": int(parts[1]), "depth": depth})
    top = [r for r in rows if r["depth"] <= 1]
    top.sort(key=lambda r: -r["cumulative_us"])
    return top[:n]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args()
    base = Path(args.base)
    env = dict(os.environ)
    env.pop("LANCHAT_HOME", None)
    env["PYTHONUNBUFFERED"] = "1"
    res: dict[str, Any] = {"kind": "startup", "runs": args.runs}
    # one untimed run first: warms the page cache and .pyc files
    time_to_ready(lanchat_argv(base / "warmup"), env)
    cold, cold_ts, warm, warm_ts, exits = [], [], [], [], []
    for i in range(args.runs):
        r, ts, _ = time_to_ready(lanchat_argv(base / f"cold{i}"), env)
        cold.append(r)
        cold_ts.append(ts)
    for _ in range(args.runs):
        r, ts, e = time_to_ready(lanchat_argv(base / "warm"), env)
        warm.append(r)
        warm_ts.append(ts)
        exits.append(e)
    res.update(cold_s=cold, cold_event_ts_s=cold_ts, warm_s=warm, warm_event_ts_s=warm_ts,
               exit_s=exits)
    res["pass_s"] = [time_exit([sys.executable, "-c", "pass"], env) for _ in range(args.runs)]
    res["imports_s"] = [time_exit([sys.executable, "-c",
                                   "import lanchat.cli, lanchat.headless, lanchat.node"], env)
                        for _ in range(args.runs)]
    argv = lanchat_argv(base / "warm")
    argv.insert(1, "-X")
    argv.insert(2, "importtime")
    err_path = base / "importtime.txt"
    with open(err_path, "w") as err:
        time_to_ready(argv, env, stderr=err)
    res["importtime_top"] = importtime_top(err_path.read_text())
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
