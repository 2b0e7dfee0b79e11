"""The web window: a chat page served by the node itself on 127.0.0.1.

`lanchat web` runs a node with it (see `run`); the shell's `/web` adds it to the running
node (commands.py, a default plugin). Built only on the node's public API and events, like
the shell and the headless mode. Needs the `web` extra (aiohttp); without it, `available()`
is False and the commands say how to install it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any

INSTALL_HINT = "the web window needs aiohttp: pip install 'lanchat[web]'"


def available() -> bool:
    """True if aiohttp can be imported."""
    return importlib.util.find_spec("aiohttp") is not None


def open_browser(url: str) -> bool:
    """Open `url` in the user's graphical browser; False (nothing opened) where there is
    none. On Linux without a display, Python's `webbrowser` would start a text browser in
    this very terminal, over the shell's prompt, so it is not asked at all."""
    import webbrowser

    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY")
                                                 or os.environ.get("WAYLAND_DISPLAY")):
        return False
    try:
        return webbrowser.open(url)
    except webbrowser.Error:
        return False


def server_of(node: Any) -> Any:
    """The node's web server extension, if it has one."""
    from lanchat.web.server import WebServer

    for ext in getattr(node, "extensions", ()):
        if isinstance(ext, WebServer):
            return ext
    return None


def attach(node: Any, *, port: int = 0, plugins: Any = None) -> Any:
    """Add the web server to a node that is not started yet; idempotent."""
    return _add(node, node.extensions.append, port, plugins)


def start_on(node: Any, *, port: int = 0, plugins: Any = None) -> Any:
    """The web server of a running node, started now if it has none (not on the loop)."""
    return _add(node, node.add_extension, port, plugins)


def _add(node: Any, add: Any, port: int, plugins: Any) -> Any:
    from lanchat.web.server import WebServer

    existing = server_of(node)
    if existing is None:
        existing = WebServer(port=port, plugins=plugins)
        add(existing)
    return existing
