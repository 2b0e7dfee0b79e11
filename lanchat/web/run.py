"""`lanchat web`: what the web window adds to the headless node (commands on stdin, events
on stdout): the window, opened in the user's browser once it listens. The command line
runs the headless node with it, so the web face imports no other face."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from lanchat.events import Event
from lanchat.web import INSTALL_HINT, available, open_browser


def web_window(*, port: int, browser: bool) -> Callable[[Any, Any], None] | None:
    """`prepare(node, plugins)` that attaches the web window before the node starts; None,
    with a line on stderr, when the web extra is not installed."""
    if not available():
        print(f"lanchat: {INSTALL_HINT}", file=sys.stderr)
        return None
    from lanchat.web import attach

    def prepare(node: Any, plugins: Any) -> None:
        attach(node, port=port, plugins=plugins)
        if browser:
            def open_page(event: Event) -> None:
                if event.name == "web_ready" and not open_browser(event["url"]):
                    print("lanchat: no graphical browser here; open the address above "
                          "yourself", file=sys.stderr)
            node.subscribe(open_page)

    return prepare
