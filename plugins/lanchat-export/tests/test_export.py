"""lanchat-export against real in-process nodes on 127.0.0.1."""

from __future__ import annotations

import importlib
import json
import os
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lanchat_export import ExportPlugin, md_escape, parse_args

from lanchat.commands import CommandError

PACKAGE = Path(__file__).resolve().parents[1]
NASTY = [
    "# not a heading\n---\n===\n> not a quote\n- not a list\n1. not a list\n2) nor this",
    "*em* _em_ **strong** `code` ~~gone~~ [link](http://x) ![img](y) <b>html</b> &amp; $x$",
    "| a | b |\n|---|---|\n| c | d |",
    "```\nfence\n```\n~~~\n    indented code\n\ttab",
    "trailing  \n\n\nblank lines\\\nbackslash at the end\\",
    "control \x1b[31mred\x1b[0m \x07 bidi \u202eevil\u202c \u2028 emoji \U0001f600 \u00e9",
]


def as_rendered(text: str) -> str:
    """The text as markdown-it shows it: most control characters become U+FFFD."""
    return re.sub("[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]", "\ufffd", text)


def md_texts(markdown: str) -> list[str]:
    """The text of each message paragraph as CommonMark renders it; fail on any markup."""
    markdown_it = pytest.importorskip("markdown_it")
    md = markdown_it.MarkdownIt("commonmark").enable(["table", "strikethrough"])
    tokens = md.parse(markdown)
    texts = []
    for i, token in enumerate(tokens):
        if token.type != "inline" or tokens[i - 1].type != "paragraph_open":
            continue
        children = [c for c in token.children or [] if c.type != "text" or c.content]
        if not children or children[0].type != "strong_open":
            continue
        end = next(j for j, c in enumerate(children) if c.type == "hardbreak")
        parts = []
        for child in (token.children or [])[len(token.children or []) - len(children) + end + 1:]:
            assert child.type in ("text", "hardbreak"), (child.type, child.content)
            parts.append("\n" if child.type == "hardbreak" else child.content)
        texts.append("".join(parts))
    return texts


def chat(plugged: Callable[..., Any]) -> tuple[Any, Any, list[str]]:
    """Bob with the export plugin; alice sends him the nasty texts; he answers once."""
    bob = plugged("bob", ExportPlugin())
    alice = plugged("alice", peers=[bob])
    alice.meets(bob)
    ids = [alice.node.send("bob", text) for text in NASTY]
    bob.log.wait("message", lambda e: e["id"] in ids, count=len(ids))
    reply = bob.run("/msg alice thanks, *alice*")
    assert reply is not None
    alice.log.wait("message", lambda e: e["id"] == reply.data["id"])
    return alice, bob, [*NASTY, "thanks, *alice*"]


def test_json_export_holds_the_history_exactly(plugged: Callable[..., Any], tmp_path: Path) -> None:
    """The JSON file's messages equal node.history() row for row, every character kept."""
    alice, bob, texts = chat(plugged)
    out = bob.run(f"/export alice '{tmp_path / 'with alice.json'}'")
    assert out is not None and out.data["format"] == "json" and out.data["messages"] == 7
    doc = json.loads((tmp_path / "with alice.json").read_text(encoding="utf-8"))
    assert doc["lanchat_export"] == 1
    assert doc["me"] == {"id": bob.node.node_id, "nick": "bob"}
    assert doc["peer"] == {"id": alice.node.node_id, "nick": "alice"}
    assert doc["messages"] == bob.node.history("alice", 100)
    assert [m["text"] for m in doc["messages"]] == texts


def test_markdown_export_renders_as_the_plain_text(
        plugged: Callable[..., Any], tmp_path: Path) -> None:
    """Rendered with CommonMark, each message is its exact text with no formatting at all."""
    alice, bob, texts = chat(plugged)
    bob.run(f"/export --format md {tmp_path / 'all.txt'}")
    markdown = (tmp_path / "all.txt").read_text(encoding="utf-8")
    assert markdown.startswith("# lanchat history (everyone)\n")
    assert "\x1b" not in markdown and "\u202e" not in markdown
    rendered = md_texts(markdown)
    assert rendered == [as_rendered(t) for t in texts]
    assert "**alice**, " in markdown and "**bob** to alice, " in markdown


def test_broadcasts_are_marked_and_limit_keeps_the_newest(
        plugged: Callable[..., Any], tmp_path: Path) -> None:
    """A broadcast reads 'to everyone'; --limit 1 keeps only the last message."""
    bob = plugged("bob", ExportPlugin())
    alice = plugged("alice", peers=[bob])
    alice.meets(bob)
    first = alice.node.send("bob", "first")
    second, _ = alice.node.broadcast("hello all")
    bob.log.wait("message", lambda e: e["id"] in (first, second), count=2)
    bob.run(f"/export {tmp_path / 'all.md'}")
    assert "**alice** to everyone, " in (tmp_path / "all.md").read_text()
    out = bob.run(f"/export --limit=1 {tmp_path / 'last.json'}")
    assert out is not None and out.text == f"exported 1 message to {tmp_path / 'last.json'}"
    rows = json.loads((tmp_path / "last.json").read_text())["messages"]
    assert [r["text"] for r in rows] == ["hello all"]


def test_an_existing_file_needs_force(plugged: Callable[..., Any], tmp_path: Path) -> None:
    """Exporting over a file is refused and leaves it alone; --force replaces it."""
    bob = plugged("bob", ExportPlugin())
    target = tmp_path / "keep.md"
    target.write_text("precious")
    with pytest.raises(CommandError, match="exists; add --force"):
        bob.run(f"/export {target}")
    assert target.read_text() == "precious"
    bob.run(f"/export --force {target}")
    assert target.read_text().startswith("# lanchat history")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bob", "keep.md"]


def test_wrong_arguments_say_the_usage(plugged: Callable[..., Any], tmp_path: Path) -> None:
    """No path, a bad format, an unknown peer or a missing folder each explain themselves."""
    bob = plugged("bob", ExportPlugin())
    for args, message in [("", "usage: /export"), ("--format html x.md", "md or json"),
                          ("--limit 0 x.md", "positive number"), ("--zip x", "unknown option"),
                          ("a b c", "usage"), ("'unclosed", "cannot read")]:
        with pytest.raises(CommandError, match=message):
            bob.run(f"/export {args}")
    with pytest.raises(CommandError):
        bob.run(f"/export nobody {tmp_path / 'x.md'}")
    with pytest.raises(CommandError, match="no folder"):
        bob.run(f"/export {tmp_path / 'missing' / 'x.md'}")


def test_format_follows_the_suffix_unless_given() -> None:
    """x.json is JSON, anything else Markdown, and --format wins over the suffix."""
    assert parse_args("x.json")["format"] == "json"
    assert parse_args("x.JSON")["format"] == "json"
    assert parse_args("notes.txt")["format"] == "md"
    assert parse_args("--format md x.json")["format"] == "md"
    assert parse_args("alice ~/x.md")["peer"] == "alice"
    assert parse_args("~/x.md")["path"] == Path("~/x.md").expanduser()


@settings(max_examples=int(os.environ.get("EXPORT_EXAMPLES", "300")), deadline=None)
@given(st.text(st.characters(codec="utf-8"), min_size=1, max_size=60))
def test_any_text_survives_markdown(text: str) -> None:
    """Whatever a peer typed, the Markdown paragraph renders back to exactly that text."""
    if not text.rstrip("\n"):
        assert md_escape(text) == ""
        return
    markdown = "**x**:\\\n" + md_escape(text) + "\n"
    assert md_texts(markdown) == [as_rendered(text.rstrip("\n"))]


def test_entry_point_names_the_plugin_object() -> None:
    """The package's `lanchat` entry point loads an ExportPlugin."""
    meta = tomllib.loads((PACKAGE / "pyproject.toml").read_text())
    module, _, attr = meta["project"]["entry-points"]["lanchat"]["export"].partition(":")
    assert isinstance(getattr(importlib.import_module(module), attr), ExportPlugin)
