"""CPU time of the shell's start, in-process (steadier than wall time on a busy machine).

    python -m bench.bench_shell_start [--runs 10] [--before DIR] [--stored 10000]
                                      [--paste-mib 2] [--new-home]

Each sample is a fresh Python process that imports the shell, builds it over a node on
127.0.0.1 (no discovery, port 0) and runs it, on a pipe input and a dummy terminal, until
its node has started; it reports the CPU seconds (every thread's) to two moments: the
prompt first drawn (`Application.after_render`), the figure issue 15's goal 4 is about,
and the node started behind it (the shell's `_started`; a tree whose shell starts the node
before the prompt, such as `--before` a change, is timed at `Shell.start()` returning).
Then it types /quit. As a user starts it every day: the home exists (made by one untimed
start first; `--new-home` times a first start instead, which makes the key and
certificate), the modules are compiled (an untimed warm-up writes the bytecode under a
cache of the run's own, even where PYTHONDONTWRITEBYTECODE is set: an installed package
has its .pyc, so the bare prompt-toolkit run has them too), and the shell builds its own
plugins, scanning entry points as `lanchat` does (until 2026-12-06 16:50 the samples
passed in plugins built without the scan: that builds the built-in plugins, commands and
all, before the prompt, where the shell now builds them after it).
Beside it in the same run: a bare prompt-toolkit `PromptSession` built and drawn the same
way, and with `--before DIR` the same steps with the lanchat in DIR (a checkout from
before a change, run with DIR as working directory), runs interleaved. Last, with buffers:
the scrollback read of a home holding `--stored` messages (it runs off the prompt's
thread, after the prompt is drawn). And a bracketed paste of `--paste-mib` MiB fed in
1 KiB reads (as a terminal delivers it) through prompt-toolkit's parser and through the
shell's paste parser. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PYCACHE = Path(tempfile.gettempdir()) / "bench-shell-start-pycache"

BARE = """
import json, time
t0 = time.process_time()
from prompt_toolkit import PromptSession
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput
t1 = time.process_time()
marks = {}

def drawn(app):
    if "drawn" not in marks:
        marks["drawn"] = time.process_time()
        app.exit(result="")

with create_pipe_input() as inp:
    session = PromptSession(input=inp, output=DummyOutput(), bottom_toolbar=' to: all')
    t2 = time.process_time()
    session.app.after_render += drawn
    session.prompt("all> ")
print(json.dumps({"import": t1 - t0, "build": t2 - t1, "draw": marks["drawn"] - t2}))
"""

SHELL = """
import json, sys, time
from pathlib import Path
t0 = time.process_time()
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput
from lanchat.config import Config
from lanchat.shell.app import Shell
t1 = time.process_time()
home = Path(sys.argv[1])
cfg = Config(home=home, nick="alice", port=0, interfaces=["127.0.0.1"], mdns=False,
             beacon=False)
marks = {}
with create_pipe_input() as inp:
    def up():
        marks["started"] = time.process_time()
        inp.send_text("/quit\\r")

    def drawn(app):
        marks.setdefault("drawn", time.process_time())

    shell = Shell(cfg, input=inp, output=DummyOutput())
    t2 = time.process_time()
    shell.session.app.after_render += drawn
    started = getattr(shell, "_started", None)
    if started is None:  # a tree that starts the node before the prompt
        shell.start()
        up()
    else:
        def wrapped():
            started()
            up()
        shell._started = wrapped
    shell.run()
print(json.dumps({"import": t1 - t0, "build": t2 - t1, "to drawn": marks["drawn"] - t2,
                  "to started": marks["started"] - t2,
                  "total to drawn": marks["drawn"] - t0,
                  "total to started": marks["started"] - t0}))
"""

LOAD = """
import json, sys, time
from pathlib import Path
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput
from lanchat.config import Config
from lanchat.plugins import Plugins
from lanchat.shell.app import Shell
from lanchat.shell.history import load_scrollback
home = Path(sys.argv[1])
cfg = Config(home=home, nick="alice", port=0, interfaces=["127.0.0.1"], mdns=False,
             beacon=False)
with create_pipe_input() as inp:
    shell = Shell(cfg, input=inp, output=DummyOutput(),
                  plugins=Plugins(home, entry_points=False))
    shell.start()
    t0 = time.process_time()
    load_scrollback(shell.node, shell.buffers, shell.state)
    shell.buffers.loaded()
    loaded = time.process_time() - t0
    shell.node.close()
print(json.dumps({"load": loaded}))
"""

FILL = """
import sys, time
from pathlib import Path
from lanchat.config import Config
from lanchat.delivery import new_message_id
from lanchat.node import Node
from lanchat.protocol import Chat
from lanchat.store import Received
node = Node(Config(home=Path(sys.argv[1]), nick="alice", port=0, interfaces=["127.0.0.1"],
                   mdns=False, beacon=False))
node.start()
n = int(sys.argv[2])
peers = [c * 52 for c in "bcdefghij"]
now = time.time()
rows = [Received(peers[i % 9], "p", now, Chat(new_message_id(), now, f"message {i}",
                                              i % 3 == 0, "p")) for i in range(n)]
for k in range(0, n, 1000):
    node.store.commit_batch(rows[k:k + 1000], [])
node.close()
"""


def paste_cpu(mib: int) -> tuple[float, float]:
    """CPU seconds to parse one bracketed paste: prompt-toolkit's parser, the shell's."""
    import time

    from prompt_toolkit.input.vt100_parser import Vt100Parser

    from lanchat.shell.app import MAX_INPUT_CHARS
    from lanchat.shell.paste import PASTE_END, PASTE_START, PasteGuardParser

    data = PASTE_START + "x" * (mib << 20) + PASTE_END
    out = []
    for parser in (Vt100Parser(lambda key: None),
                   PasteGuardParser(lambda key: None, MAX_INPUT_CHARS)):
        start = time.process_time()
        for i in range(0, len(data), 1024):
            parser.feed(data[i:i + 1024])
        out.append(time.process_time() - start)
    return out[0], out[1]


def sample_env(tree: Path) -> dict[str, str]:
    """The environment of a sample: `tree` first on the path, bytecode kept (in a cache of
    the run's own)."""
    env = dict(os.environ, PYTHONPATH=str(tree), PYTHONPYCACHEPREFIX=str(PYCACHE))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def sample(code: str, tree: Path, *args: str) -> dict[str, float | None]:
    """One fresh process running `code` with `tree` first on the path."""
    env = sample_env(tree)
    # cwd: `python -c` puts it first on the path, ahead of PYTHONPATH
    out = subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=tree,
                         capture_output=True, text=True, timeout=120, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def ms(values: list[float]) -> str:
    """Median and range of seconds, in ms."""
    return (f"p50 {statistics.median(values) * 1000:5.0f}  min {min(values) * 1000:5.0f}  "
            f"max {max(values) * 1000:5.0f}  (n={len(values)})")


def main() -> int:
    """Run the samples and print one table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--before", type=Path, default=None)
    parser.add_argument("--stored", type=int, default=10_000)
    parser.add_argument("--paste-mib", type=int, default=2)
    parser.add_argument("--new-home", action="store_true",
                        help="time a first start (a new home each sample)")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-shell-start-"))
    trees = [("this tree", REPO_ROOT)]
    if args.before is not None:
        trees.insert(0, ("before", args.before.resolve()))
    bare: list[float] = []
    drawn: dict[str, list[float]] = {}
    started: dict[str, list[float]] = {}
    steps: dict[str, dict[str, list[float]]] = {}
    sample(BARE, REPO_ROOT)  # warm-up: bytecode written, homes made, untimed
    for label, tree in trees:
        sample(SHELL, tree, str(base / label))
    for i in range(args.runs):
        got = sample(BARE, REPO_ROOT)
        bare.append(sum(v or 0.0 for v in got.values()))
        for step, value in got.items():
            steps.setdefault("bare", {}).setdefault(step, []).append(value or 0.0)
        for label, tree in trees:
            home = base / (f"{label}-{i}" if args.new_home else label)
            got = sample(SHELL, tree, str(home))
            drawn.setdefault(label, []).append(got.pop("total to drawn") or 0.0)
            started.setdefault(label, []).append(got.pop("total to started") or 0.0)
            for step, value in got.items():
                if value is not None:
                    steps.setdefault(label, {}).setdefault(step, []).append(value)
    subprocess.run([sys.executable, "-c", FILL, str(base / "stored"), str(args.stored)],
                   env=sample_env(REPO_ROOT), check=True, timeout=300)
    loads = [sample(LOAD, REPO_ROOT, str(base / "stored"))["load"] or 0.0
             for _ in range(args.runs)]
    which = "first start, new home" if args.new_home else "home made already"
    print(f"\n{which}; bytecode compiled; plugin entry points scanned")
    floor = statistics.median(bare)
    rows = [("CPU to a drawn prompt, bare prompt-toolkit (ms)", ms(bare))]
    for label in drawn:
        ratio = statistics.median(drawn[label]) / floor
        rows.append((f"CPU to the drawn prompt, {label} (ms)",
                     f"{ms(drawn[label])}  {ratio:.2f}x bare"))
        rows.append((f"CPU to the node started, {label} (ms)", ms(started[label])))
    for label, by_step in steps.items():
        rows += [(f"  {label}: {step} (ms)", ms(values)) for step, values in by_step.items()]
    rows.append((f"CPU of the scrollback read, {args.stored:,} stored (ms, off the prompt)",
                 ms(loads)))
    theirs, ours = paste_cpu(args.paste_mib)
    rows.append((f"CPU to parse a {args.paste_mib} MiB paste, the shell's parser (ms)",
                 f"{ours * 1000:.0f}  (prompt-toolkit's parser: {theirs * 1000:.0f})"))
    width = max(len(r[0]) for r in rows)
    print(f"\npython {sys.version.split()[0]}")
    for name, figure in rows:
        print(f"{name:<{width}}  {figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
