"""lanchat-export: `/export [PEER] [--format md|json] [--limit N] [--force] PATH` writes the
stored history to Markdown (every character escaped so it renders as the text it was) or JSON
(the history rows exactly as the node returns them).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from lanchat.commands import CommandError, Output
from lanchat.hookspecs import hookimpl

__all__ = ["FORMAT_VERSION", "ExportPlugin", "md_escape", "plugin", "to_json", "to_markdown"]

FORMAT_VERSION = 1
ALL_MESSAGES = 10**9
USAGE = "/export [PEER] [--format md|json] [--limit N] [--force] PATH"

# Control characters (not newline or tab) and bidi/format characters, shown as entities.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
                     "\ufeff]")
# Inline syntax of CommonMark and GitHub Flavored Markdown (with $ math), escaped anywhere.
_INLINE = re.compile(r"([\\`*_\[\]<>&~|$!])")
# Line starts that open a block: heading, quote, list, setext underline, ordered list.
_BLOCK_START = re.compile(r"^([#>+=-])|^(\d+)([.)])")


def _entity(match: re.Match[str]) -> str:
    return f"&#x{ord(match.group()):X};"


def _edge_space(match: re.Match[str]) -> str:
    return "".join(f"&#{ord(c)};" for c in match.group())


def md_escape_line(line: str) -> str:
    """One line of text as Markdown inline content that renders as exactly that text."""
    line = _INLINE.sub(r"\\\1", line)
    line = _UNSAFE.sub(_entity, line)
    line = _BLOCK_START.sub(lambda m: "\\" + m.group(1) if m.group(1)
                            else m.group(2) + "\\" + m.group(3), line)
    line = re.sub(r"^\s+", _edge_space, line)
    return re.sub(r"\s+$", _edge_space, line)


def md_escape(text: str) -> str:
    """Text as Markdown lines joined by hard breaks, no markup left; trailing breaks dropped."""
    text = text.rstrip("\n")
    return "\\\n".join(md_escape_line(line) for line in text.split("\n")) if text else ""


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


def to_json(rows: list[dict[str, Any]], me: dict[str, Any],
            peer: dict[str, Any] | None) -> str:
    """The export as JSON: metadata and the history rows unchanged."""
    doc = {"lanchat_export": FORMAT_VERSION, "exported": _iso(time.time()),
           "me": {"id": me["id"], "nick": me["nick"]},
           "peer": None if peer is None else {"id": peer["id"], "nick": peer["nick"]},
           "messages": rows}
    return json.dumps(doc, ensure_ascii=True, indent=2) + "\n"


def to_markdown(rows: list[dict[str, Any]], me: dict[str, Any],
                peer: dict[str, Any] | None) -> str:
    """The export as Markdown: a heading per day, a paragraph per message."""
    title = "with " + md_escape_line(" ".join(peer["nick"].split())) if peer else "(everyone)"
    out = [f"# lanchat history {title}", "",
           f"Exported {_iso(time.time())} by {md_escape_line(me['nick'])}"
           f" ({len(rows)} message{'s' if len(rows) != 1 else ''})", ""]
    day = ""
    for row in rows:
        stamp = datetime.fromtimestamp(row["ts"]).astimezone()
        if stamp.strftime("%Y-%m-%d") != day:
            day = stamp.strftime("%Y-%m-%d")
            out += [f"## {day}", ""]
        sender = md_escape_line(" ".join(str(row["nick"]).split()))
        if row["to"] == "broadcast":
            where = " to everyone"
        elif row["direction"] == "out":
            where = " to " + md_escape_line(" ".join(str(row["with"]).split()))
        else:
            where = ""
        body = md_escape(row["text"])
        head = f"**{sender}**{where}, {stamp.strftime('%H:%M:%S')}:"
        out += [head + "\\", body, ""] if body else [head, ""]
    return "\n".join(out)


def parse_args(argtext: str) -> dict[str, Any]:
    """Read the /export arguments; raise CommandError with the usage when they are wrong."""
    try:
        words = shlex.split(argtext)
    except ValueError as exc:
        raise CommandError(f"cannot read the arguments: {exc}") from None
    opts: dict[str, Any] = {"format": None, "limit": ALL_MESSAGES, "force": False}
    positional: list[str] = []
    it = iter(words)
    for word in it:
        if word == "--force":
            opts["force"] = True
        elif word in ("--format", "--limit") or word.startswith(("--format=", "--limit=")):
            name, _, value = word.partition("=")
            value = value or next(it, "")
            if name == "--format":
                if value not in ("md", "json"):
                    raise CommandError(f"--format takes md or json; usage: {USAGE}")
                opts["format"] = value
            else:
                if not value.isdigit() or int(value) < 1:
                    raise CommandError(f"--limit takes a positive number; usage: {USAGE}")
                opts["limit"] = int(value)
        elif word.startswith("--"):
            raise CommandError(f"unknown option {word}; usage: {USAGE}")
        else:
            positional.append(word)
    if len(positional) not in (1, 2):
        raise CommandError(f"usage: {USAGE}")
    opts["peer"] = positional[0] if len(positional) == 2 else None
    opts["path"] = Path(positional[-1]).expanduser()
    if opts["format"] is None:
        opts["format"] = "json" if opts["path"].suffix.lower() == ".json" else "md"
    return opts


def write_atomically(path: Path, text: str, *, force: bool) -> None:
    """Write `text` to `path` in one step; an existing file needs `force`."""
    if path.exists() and not force:
        raise CommandError(f"{path} exists; add --force to replace it")
    if not path.parent.is_dir():
        raise CommandError(f"no folder {path.parent}")
    fd, tmp = tempfile.mkstemp(prefix=".lanchat-export-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ExportPlugin:
    """The /export command."""

    def _export(self, ctx: Any, argtext: str) -> Output:
        opts = parse_args(argtext)
        node = ctx.node
        peer = None
        if opts["peer"] is not None:
            try:
                peer = node.resolve(opts["peer"])
            except LookupError as exc:
                raise CommandError(str(exc).strip("'\"")) from None
        rows = node.history(peer["id"] if peer else None, opts["limit"])
        render = to_json if opts["format"] == "json" else to_markdown
        path: Path = opts["path"]
        try:
            write_atomically(path, render(rows, node.info(), peer), force=opts["force"])
        except OSError as exc:
            raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from None
        n = len(rows)
        return Output(f"exported {n} message{'s' if n != 1 else ''} to {path}",
                      {"path": str(path), "format": opts["format"], "messages": n})

    @hookimpl
    def lanchat_register_commands(self, registry: Any) -> None:
        """Add /export."""
        registry.add("export", self._export, help="write history to Markdown or JSON",
                     usage=USAGE)


plugin = ExportPlugin()
