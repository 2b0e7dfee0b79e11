"""`lanchat send --to PEER --file PATH`: offer one file or folder, wait until it is verified."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from lanchat.config import Config
from lanchat.errors import NodeError
from lanchat.naming import AmbiguousName
from lanchat.transfer import TransferError, attach

PEER_WAIT_SHARE = 0.5


def send_file(config: Config, *, to: str, path: Path, wait_s: float) -> int:
    """Start a node, offer `path` to `to`, wait until the peer verified it; 0 done, 1 not."""
    from lanchat.assembly import EventWaiter, open_node

    if not path.expanduser().exists():
        print(f"lanchat: no such file or folder: {path}", file=sys.stderr)
        return 1
    node = open_node(config)
    manager = attach(node)
    events = EventWaiter()
    node.subscribe(events)
    try:
        node.start()
    except NodeError as exc:
        print(f"lanchat: {exc}", file=sys.stderr)
        return 1
    deadline = time.monotonic() + wait_s
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
        tid = transfer.id
        event = events.wait(lambda e: e.fields.get("transfer") == tid and (
            (e.name == "file_done" and e.fields.get("direction") == "out")
            or (e.name == "file_failed" and not e.fields.get("resumable"))), deadline)
        if event is None:
            print(f"lanchat: {path} not verified by {to} in {wait_s:g} s; the offer stays in "
                  f"{config.home} and is made again the next time lanchat runs there",
                  file=sys.stderr)
            return 1
        if event.name == "file_failed":
            print(f"lanchat: {path} not sent: {event.fields.get('reason')}", file=sys.stderr)
            return 1
        return 0
    finally:
        node.close()
