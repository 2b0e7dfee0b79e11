"""The open buffers and their read markers, kept across restarts in `<home>/buffers.json`."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from lanchat.home import write_atomic

log = logging.getLogger(__name__)

STATE_FILE = "buffers.json"
STATE_VERSION = 1


class ReadMarkers:
    """What the last run saved (`buffers`: key and name, in order; `read`: key -> id of
    the last message read there), and writing it again."""

    def __init__(self, home: Path | None, max_buffers: int) -> None:
        self.path = home / STATE_FILE if home is not None else None
        self.found = False  # a file was there: not the first run
        self.buffers: list[tuple[str, str]] = []
        self.read: dict[str, str] = {}
        if self.path is not None:
            self._load(self.path, max_buffers)

    def _load(self, path: Path, max_buffers: int) -> None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            log.warning("ignoring %s: %s", path, exc)
            return
        self.found = True
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            return
        buffers = data.get("buffers", [])
        read = data.get("read", {})
        if isinstance(buffers, list) and all(isinstance(b, list) and len(b) == 2
                                             for b in buffers):
            self.buffers = [(str(k), str(n)) for k, n in buffers
                            if isinstance(k, str) and isinstance(n, str)][:max_buffers]
        if isinstance(read, dict):
            self.read = {str(k): str(v) for k, v in read.items()}

    def save(self, buffers: list[tuple[str, str]], read: dict[str, str]) -> None:
        """Write the buffer list and read markers (best effort: a warning if it fails)."""
        if self.path is None:
            return
        data = {"version": STATE_VERSION, "buffers": [[k, n] for k, n in buffers],
                "read": read}
        try:
            write_atomic(self.path, json.dumps(data, indent=1).encode())
        except OSError as exc:
            log.warning("cannot save read markers to %s: %s", self.path, exc)
