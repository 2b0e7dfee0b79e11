"""`lanchat send --to PEER --file PATH`: offer one file or folder, wait until it is verified.

On a terminal a progress bar is drawn on stderr; with `--json` every event (file_progress
among them) goes to stdout as `run --json` writes it. The outcome is said in words.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from lanchat.config import Config
from lanchat.errors import NodeError
from lanchat.events import Event
from lanchat.naming import AmbiguousName
from lanchat.protocol import HASH_NAMES, SHA256
from lanchat.runtime import closing
from lanchat.text import safe_line
from lanchat.transfer import TransferError, attach
from lanchat.transfer.progress import Meter, clock_text, human_size

PEER_WAIT_SHARE = 0.5
ERASE_LINE = "\r\x1b[K"


class ProgressBar:
    """One transfer's bar on a terminal line (stderr), redrawn on each progress event."""

    def __init__(self, out: TextIO, label: str, size: int) -> None:
        self.out = out
        self.label = label
        self.meter = Meter(size)
        self.lock = threading.Lock()
        self.drawn = False

    def update(self, done: int) -> None:
        """Redraw with `done` bytes moved."""
        with self.lock:
            self.meter.update(done, time.monotonic())
            width = shutil.get_terminal_size((80, 24)).columns
            self.out.write(ERASE_LINE + self.meter.line(self.label, width - 1))
            self.out.flush()
            self.drawn = True

    def clear(self) -> None:
        """Erase the bar so a line of words can take its place."""
        with self.lock:
            if self.drawn:
                self.out.write(ERASE_LINE)
                self.out.flush()
                self.drawn = False


def outcome_words(event: Event, name: str, nick: str) -> str:
    """A finished transfer in words: verified, declined (why), cancelled or failed (why)."""
    f = event.fields
    if event.name == "file_done":
        check = HASH_NAMES.get(str(f.get("hash", SHA256)), "digest")
        return f"sent {name} to {nick}: {human_size(f.get('size', 0))}, {check} verified"
    reason, detail = str(f.get("reason", "")), safe_line(str(f.get("detail", "")))
    if reason == "declined":
        return f"{nick} declined {name}" + (f": {detail}" if detail else "")
    if reason.startswith("cancelled"):
        who = nick if reason == "cancelled by peer" else "you"
        return f"{name} cancelled by {who}" + (f": {detail}" if detail else "")
    return f"{name} not sent: {safe_line(reason)}" + (f" ({detail})" if detail else "")


def send_file(config: Config, *, to: str, path: Path, wait_s: float,
              json_mode: bool = False) -> int:
    """Start a node, offer `path` to `to`, wait until the peer verified it; 0 done, 1 not."""
    from lanchat.assembly import EventWaiter, open_node, print_json_events

    if not path.expanduser().exists():
        print(f"lanchat: no such file or folder: {path}", file=sys.stderr)
        return 1
    node = open_node(replace(config, ephemeral=True))
    manager = attach(node)
    events = EventWaiter()
    node.subscribe(events)
    if json_mode:
        print_json_events(node, sys.stdout)
    bar: ProgressBar | None = None
    tid = ""

    def draw(event: Event) -> None:
        if bar is not None and event.name == "file_progress" and event["transfer"] == tid:
            bar.update(int(event["done"]))

    if not json_mode and sys.stderr.isatty():
        node.subscribe(draw)
    try:
        node.start()
    except NodeError as exc:
        print(f"lanchat: {exc}", file=sys.stderr)
        return 1
    started = time.monotonic()
    deadline = started + wait_s
    try:
        peer_deadline = time.monotonic() + wait_s * PEER_WAIT_SHARE
        while True:
            try:
                peer = node.resolve(to)
            except AmbiguousName as exc:
                print(f"lanchat: {exc}", file=sys.stderr)
                return 1
            except LookupError:
                peer = None
            if peer is not None and (peer["online"] or time.monotonic() >= peer_deadline):
                break
            if events.wait(lambda e: e.name in ("peer_joined", "peer_updated"),
                           min(peer_deadline, time.monotonic() + 0.5)) is None \
                    and time.monotonic() >= peer_deadline:
                if peer is None:
                    print(f"lanchat: no peer {to!r} found in {wait_s:g} s; check `lanchat "
                          "peers` or name it with --peer HOST[:PORT]", file=sys.stderr)
                    return 1
        try:
            transfer = manager.offer(peer["id"], path)
        except TransferError as exc:
            print(f"lanchat: {exc}", file=sys.stderr)
            return 1
        name, nick = safe_line(transfer.name), safe_line(peer["nick"])
        bar = ProgressBar(sys.stderr, f"{name} -> {nick}", transfer.size)
        tid = transfer.id
        event = events.wait(lambda e: e.fields.get("transfer") == tid and (
            (e.name == "file_done" and e.fields.get("direction") == "out")
            or (e.name == "file_failed" and not e.fields.get("resumable"))), deadline)
        bar.clear()
        if event is None:
            print(f"lanchat: {path} not verified by {nick} in {wait_s:g} s; the offer stays "
                  f"in {config.home} and is made again the next time lanchat runs there",
                  file=sys.stderr)
            return 1
        words = outcome_words(event, name, nick)
        if event.name == "file_failed":
            print(f"lanchat: {words}", file=sys.stderr)
            return 1
        if not json_mode:
            print(f"{words} in {clock_text(time.monotonic() - started)}")
        return 0
    finally:
        with closing():
            node.close()
