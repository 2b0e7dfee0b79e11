"""Shell figures in a real terminal (tmux), in lab namespaces: start-up and typing latency.

    python bench/bench_shell.py [--runs 5] [--keys 150] [--rate 200] [--before DIR]

Start-up: from starting `lanchat` to a drawn prompt with its toolbar, and on to the node
started behind it (the toolbar's "starting…" turned into "N online"), wall time and the
process's CPU at each (read when the screen is seen to change, so a little late). Typing: a key sent
with `tmux send-keys` until capture-pane shows it on the prompt line, idle and while bob
sends `--rate` messages per second, beside a bare prompt-toolkit prompt in the same tmux.
The load goes to the buffer alice reads (`/all`) and, with buffers, to one she does not
(`/msg alice`: bob's buffer, counted in the toolbar). Message latency: from bob's `/all`
to the line on alice's screen. `--before DIR` runs the same scenarios with the lanchat in
DIR too (a checkout from before a change, compiled first and run with DIR as its working
directory, so `python -m lanchat` finds DIR's lanchat), in the same run. Nothing is
asserted.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_shell_tmux import REPO_ROOT, Tmux, shell_argv  # noqa: E402

from bench.common import precompile  # noqa: E402
from lab import Lab, LanchatProc  # noqa: E402
from lanchat.shell.printer import WRITER_ENV  # noqa: E402

BARE_PROMPT = ("from prompt_toolkit import PromptSession\n"
               "s = PromptSession(bottom_toolbar=' to: all')\n"
               "while True:\n    s.prompt('all> ')\n")
LETTERS = "abcdefghijklmnopqrstuvwxyz"
LOAD_LINE = re.compile(r"^\d\d:\d\d <bob> load \d+$")
TORN: list[str] = []
TOOLBAR_WORDS = ("to: all", "[2:all]")  # the toolbar before buffers, and with them


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank), in the values' unit."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def prompt_line(screen: str) -> str | None:
    """The line that starts with the prompt, if it is on screen."""
    found = [ln for ln in screen.splitlines() if ln.startswith("all>")]
    return found[-1].rstrip() if found else None


def wait_until(term: Tmux, pred: Callable[[str], bool], timeout: float = 20.0) -> float:
    """Poll capture-pane until `pred(screen)`; return the monotonic time it first held."""
    deadline = time.monotonic() + timeout
    while True:
        screen = term.screen()
        now = time.monotonic()
        if pred(screen):
            return now
        if now > deadline:
            raise RuntimeError(f"not seen in {timeout}s:\n{screen}")


def prompt_is(want: str, torn: set[str] | None = None) -> Callable[[str], bool]:
    """A screen test: the prompt line reads exactly `want`; load lines that are not
    exactly as sent (a typed key echoed into them) are collected in `torn`."""

    def test(screen: str) -> bool:
        if torn is not None:
            torn.update(ln for ln in screen.splitlines()
                        if "load" in ln and not LOAD_LINE.match(ln))
        return prompt_line(screen) == want

    return test


def shows(text: str) -> Callable[[str], bool]:
    """A screen test: `text` is visible."""
    return lambda screen: text in screen


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pane_pid(term: Tmux) -> int:
    """The pid of the pane's program (`ip netns exec` and `env` exec, not fork)."""
    return int(term.tmux("display-message", "-p", "-t", "t", "#{pane_pid}").strip())


def typing_latency(term: Tmux, keys: int, clear: str = "C-c") -> list[float]:
    """Milliseconds from send-keys of one letter until the prompt line shows it; the
    `clear` key empties the line now and then."""
    typed = ""
    samples: list[float] = []
    torn: set[str] = set()
    for i in range(keys):
        if len(typed) >= 40:
            term.key(clear)
            wait_until(term, lambda s: prompt_line(s) == "all>")
            typed = ""
        ch = LETTERS[i % len(LETTERS)]
        typed += ch
        want = "all> " + typed
        start = time.monotonic()
        term.type(ch)
        seen = wait_until(term, prompt_is(want, torn))
        samples.append((seen - start) * 1000)
        time.sleep(random.uniform(0.02, 0.05))
    term.key(clear)
    TORN.extend(sorted(torn))
    return samples


class Sender:
    """Bob sends `rate` messages per second on a paced schedule, with `command`."""

    def __init__(self, bob: LanchatProc, rate: float, command: str = "/all") -> None:
        self.bob, self.rate, self.command = bob, rate, command
        self.sent = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        start = time.monotonic()
        while not self.stop.is_set():
            due = start + self.sent / self.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.bob.command(f"{self.command} load {self.sent}")
            self.sent += 1

    def __enter__(self) -> Sender:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)


def main() -> int:
    """Run every measurement and print one table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="start-ups to time")
    parser.add_argument("--keys", type=int, default=150, help="keystrokes per scenario")
    parser.add_argument("--rate", type=float, default=200, help="messages per second")
    parser.add_argument("--messages", type=int, default=50, help="message-latency samples")
    parser.add_argument("--writers", default="erase",
                        help="how batches are written: erase (the default), run_in_terminal")
    parser.add_argument("--startup-only", action="store_true",
                        help="measure start-up only")
    parser.add_argument("--before", type=Path, default=None,
                        help="a lanchat checkout to measure beside this one")
    args = parser.parse_args()
    precompile()
    if args.before is not None:
        precompile(args.before.resolve())
    rows: list[tuple[str, str]] = []
    base = Path(tempfile.mkdtemp(prefix="bench-shell-"))
    with Lab(2) as lab:
        h1, h2 = lab.hosts
        bob = h2.start_node("--no-mdns", "--no-beacon", nick="bob")
        bob.wait_event("ready")
        peer = f"{h2.ip}:{bob.port}"

        builds = [("buffers", REPO_ROOT)]
        if args.before is not None:
            builds.insert(0, ("before", args.before.resolve()))
        # start-up: bare prompt, then lanchat, each in a fresh tmux
        starts: list[tuple[str, Callable[[int], list[str]], Path | None]] = [
            ("bare prompt-toolkit prompt", lambda i: h1.wrap(
                [sys.executable, "-c", BARE_PROMPT]), None)]
        def lanchat_argv(repo: Path) -> Callable[[int], list[str]]:
            return lambda i: shell_argv(h1, lab, base / f"alice-start-{repo.name}", "alice",
                                        peer, repo=repo)

        for build, repo in builds:
            starts.append((f"lanchat shell [{build}] (known peer)", lanchat_argv(repo), repo))
        for label, argv_of, cwd in starts:
            got: dict[str, list[float]] = {}
            for i in range(args.runs):
                term = Tmux(base)
                try:
                    start = time.monotonic()
                    term.start(argv_of(i), cwd=cwd)
                    seen = wait_until(term, lambda s: prompt_line(s) is not None
                                      and any(w in s for w in TOOLBAR_WORDS))
                    pid = pane_pid(term)
                    # CPU spent to get there: steadier than wall time on a busy machine
                    got.setdefault("to prompt", []).append((seen - start) * 1000)
                    got.setdefault("CPU to the prompt", []).append(cpu_seconds(pid) * 1000)
                    if "lanchat" in label:
                        seen = wait_until(term, lambda s: "online |" in s)
                        got.setdefault("to the node started", []).append(
                            (seen - start) * 1000)
                        got.setdefault("CPU to the node started", []).append(
                            cpu_seconds(pid) * 1000)
                        wait_until(term, lambda s: "1 online" in s)  # bob: a clean bye
                finally:
                    term.close()
                if "lanchat" in label:
                    bob.wait_event("peer_left", peer={"nick": "alice"}, timeout=20)
            for what, values in got.items():
                rows.append((f"{'start-up ' if what.startswith('to') else ''}{what}, "
                             f"{label} (ms)",
                             f"p50 {statistics.median(values):6.0f}  min {min(values):6.0f}  "
                             f"max {max(values):6.0f}  (n={len(values)})"))
        if args.startup_only:
            print_rows(rows, lab.mode)
            return 0

        # typing: bare prompt baseline
        term = Tmux(base)
        try:
            term.start(h1.wrap([sys.executable, "-c", BARE_PROMPT]))
            wait_until(term, lambda s: prompt_line(s) is not None)
            lat = typing_latency(term, args.keys, clear="C-u")
            rows.append(("keystroke to screen, bare prompt, idle (ms)", summary(lat)))
        finally:
            term.close()

        # typing and messages in the lanchat shell, per build and way of writing the batch
        for build, repo in builds:
            for writer in args.writers.split(","):
                rows += lanchat_rows(lab, bob, base, peer, writer, args, build, repo)
    print_rows(rows, lab.mode)
    return 0


def print_rows(rows: list[tuple[str, str]], mode: str) -> None:
    """The table of figures."""
    width = max(len(r[0]) for r in rows)
    print(f"\nlab mode: {mode}; python {sys.version.split()[0]}")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def lanchat_rows(lab: Lab, bob: LanchatProc, base: Path, peer: str, writer: str,
                 args: argparse.Namespace, build: str, repo: Path) -> list[tuple[str, str]]:
    """Idle typing, message latency, typing under load and CPU, for one build and writer."""
    rows: list[tuple[str, str]] = []
    term = Tmux(base)
    tag = f"lanchat [{build}, {writer}]"
    since = bob.mark()
    try:
        # a home bob has not known before: nothing he broadcast meanwhile waits for it
        term.start(shell_argv(lab.hosts[0], lab, base / f"alice-type-{repo.name}", "alice",
                              peer, repo=repo),
                   env={WRITER_ENV: writer})
        wait_until(term, lambda s: "bob [1] is here" in s and prompt_line(s) is not None)
        joined = bob.wait_event("peer_joined", peer={"nick": "alice"}, timeout=20,
                                since=since)
        alice = str(joined["peer"]["id"])  # several alices are known by now: by id
        lat = typing_latency(term, args.keys)
        rows.append((f"keystroke to screen, {tag}, idle (ms)", summary(lat)))
        msg = []
        for i in range(args.messages):
            start = time.monotonic()
            bob.command(f"/all mark{i}x")
            seen = wait_until(term, shows(f"mark{i}x"))
            msg.append((seen - start) * 1000)
            time.sleep(random.uniform(0.02, 0.05))
        rows.append((f"bob's line to alice's screen, {tag}, idle (ms)", summary(msg)))
        pid = pane_pid(term)
        loads = [("shown", "/all")]
        if build == "buffers":
            loads.append(("to another buffer", f"/msg {alice}"))
        for where, command in loads:
            TORN.clear()
            cpu0, t0 = cpu_seconds(pid), time.monotonic()
            with Sender(bob, args.rate, command) as sender:
                time.sleep(1.0)
                lat = typing_latency(term, args.keys)
                sent = sender.sent
            cpu = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0) * 100
            load = f"{args.rate:g} msg/s {where}"
            rows.append((f"keystroke to screen, {tag}, {load} (ms)", summary(lat)))
            rows.append((f"{tag} CPU while {load}",
                         f"{cpu:5.1f} % of one core ({sent} messages sent)"))
            rows.append((f"{tag} message lines torn by typed keys, {load}",
                         f"{len(TORN)} {TORN[:3]}"))
            if command == "/all":
                wait_until(term, shows(f"load {sent - 1}"), timeout=30)
            else:
                wait_until(term, lambda s: "3:bob(" in s, timeout=30)
            rows.append((f"{tag} last load message counted or shown, {load}", "yes"))
    finally:
        term.close()
    bob.wait_event("peer_left", peer={"nick": "alice"}, timeout=20)
    return rows


def summary(values: list[float]) -> str:
    """p50 / p99 / max of milliseconds."""
    return (f"p50 {pct(values, 50):6.1f}  p99 {pct(values, 99):6.1f}  "
            f"max {max(values):6.1f}  (n={len(values)})")


if __name__ == "__main__":
    sys.exit(main())
