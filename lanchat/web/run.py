"""`lanchat web`: the headless node (commands on stdin, events on stdout) plus the web
window, opened in the user's browser once it listens."""

from __future__ import annotations

import sys
from typing import Any

from lanchat.config import Config
from lanchat.events import Event
from lanchat.web import INSTALL_HINT, available, open_browser


def run_web(config: Config, *, json_mode: bool, port: int, browser: bool) -> int:
    """Run a node with the web window until /quit or a signal; exit code as `run`."""
    if not available():
        print(f"lanchat: {INSTALL_HINT}", file=sys.stderr)
        return 1
    from lanchat import headless
    from lanchat.web import attach

    def prepare(node: Any, plugins: Any) -> None:
        attach(node, port=port, plugins=plugins)
        if browser:
            def open_page(event: Event) -> None:
                if event.name == "web_ready" and not open_browser(event["url"]):
                    print("lanchat: no graphical browser here; open the address above "
                          "yourself", file=sys.stderr)
            node.subscribe(open_page)

    return headless.run(config, json_mode=json_mode, prepare=prepare, stay_after_eof=True)
