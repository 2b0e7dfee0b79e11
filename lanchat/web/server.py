"""The web window's server: aiohttp on the node's own loop, on 127.0.0.1 only.

A node extension (see lanchat/node.py): `start(node)` opens the listener and emits
`web_ready` with the URL to open; `stop()` closes it and every WebSocket. Requests pass
the guard (security.py) before any handler (api.py) runs; events reach pages through the
feed (live.py).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from aiohttp import WSMsgType, web

from lanchat.events import Event
from lanchat.web import api, files
from lanchat.web.api import SERVER_KEY
from lanchat.web.live import Feed, Reader
from lanchat.web.security import Guard, security_headers

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
WS_HEARTBEAT_S = 20.0
STATIC_FILES = {"base.js": "text/javascript", "messages.js": "text/javascript",
                "files.js": "text/javascript", "app.js": "text/javascript",
                "style.css": "text/css", "icon.svg": "image/svg+xml"}
# Events pages do not need: command answers of the terminal user.
HIDDEN_EVENTS = frozenset({"output"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class WebServer:
    """The web UI of one node (an extension); public figures in `stats()`."""

    def __init__(self, *, port: int = 0, plugins: Any = None) -> None:
        self.want_port = port
        self.plugins = plugins
        self.node: Any = None
        self.guard: Guard | None = None
        self.feed: Feed | None = None
        self.counters: dict[str, int] = {}
        self.uploads = files.Uploads()
        self._runner: web.AppRunner | None = None
        self._static: dict[str, bytes] = {}
        self._ctx: Any = None
        self._ctx_lock = threading.Lock()

    def command_context(self) -> Any:
        """The command context of the page's slash commands (made once; worker thread)."""
        with self._ctx_lock:
            if self._ctx is None:
                from lanchat.commands import Context, build_registry
                from lanchat.plugins import Plugins

                plugins = self.plugins or Plugins(None, entry_points=False)
                self._ctx = Context(self.node, build_registry(plugins), plugins)
            return self._ctx

    @property
    def url(self) -> str:
        """The address to open (with the token); empty before start."""
        return self.guard.url if self.guard is not None else ""

    def count(self, key: str) -> None:
        """Add one to a counter (loop thread)."""
        self.counters[key] = self.counters.get(key, 0) + 1

    # -- extension interface (loop thread) -----------------------------------------------

    async def start(self, node: Any) -> None:
        """Listen on 127.0.0.1, start feeding events, and emit `web_ready`."""
        self.node = node
        folder = resources.files("lanchat.web") / "static"
        self._static = {name: (folder / name).read_bytes()
                        for name in ("index.html", *STATIC_FILES)}
        self.feed = Feed(asyncio.get_running_loop())
        app = web.Application(middlewares=[self._guard_mw], client_max_size=api.JSON_MAX_BYTES)
        app[SERVER_KEY] = self
        app.on_response_prepare.append(self._headers)
        app.router.add_get("/", self._index)
        app.router.add_get("/static/{name}", self._static_file)
        app.router.add_get("/ws", self._websocket)
        api.add_routes(app)
        files.add_routes(app)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, LOOPBACK, self.want_port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            from lanchat.errors import NodeError

            raise NodeError(f"web: cannot listen on {LOOPBACK}:{self.want_port}: "
                            f"{exc.strerror or exc}; choose another --web-port") from None
        self._runner = runner
        port = runner.addresses[0][1]
        self.guard = Guard(f"{LOOPBACK}:{port}")
        node.subscribe(self._on_event)
        await asyncio.get_running_loop().run_in_executor(None, self.uploads.open,
                                                         node.config.home)
        node.emit("web_ready", url=self.guard.url, port=port)

    async def stop(self) -> None:
        """Close the listener and every page's socket."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    def on_message(self, session: Any, message: Any) -> bool:
        """The web window takes no control messages from peers."""
        return False

    def set_nick(self, nick: str) -> None:
        """Pages read the nick from events and `/api/state`; nothing to do."""

    def stats(self) -> dict[str, Any]:
        """Counters: refusals by kind, events published, pages open."""
        feed = self.feed
        return {"counters": {**self.counters, **(feed.counters if feed else {})},
                "pages": feed.readers if feed else 0, "url": self.url}

    # -- events (event thread) -------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        if event.name in HIDDEN_EVENTS or self.feed is None:
            return
        self.feed.publish(event.name, dict(event.fields), event.ts)
        if event.name in ("file_done", "file_failed"):
            self.uploads.finished(event)

    # -- the guard ---------------------------------------------------------------------

    @web.middleware
    async def _guard_mw(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        guard = self.guard
        assert guard is not None
        if not guard.host_ok(request.headers.get("Host")):
            self.count("refused_host")
            return _refuse(421, "this server answers only to its own address "
                                f"http://{guard.host}/")
        if request.path == "/" and "token" in request.query:
            if not guard.token_ok(request.query.get("token")):
                self.count("refused_token")
                return _refuse(403, "this link's key is not valid (any more); open the "
                                    "address lanchat printed last")
            answer = web.HTTPSeeOther("/")
            answer.set_cookie(guard.cookie_name, guard.session, httponly=True,
                              samesite="Strict", path="/")
            raise answer
        if not guard.cookie_ok(request.cookies.get(guard.cookie_name)):
            self.count("refused_cookie")
            return _refuse(403, "open the address lanchat printed (it carries the key)")
        writes = request.method not in ("GET", "HEAD")
        if (writes or request.path == "/ws") and not guard.origin_ok(
                request.headers.get("Origin")):
            self.count("refused_origin")
            return _refuse(403, "requests from other sites are refused")
        return await handler(request)

    async def _headers(self, request: web.Request, response: web.StreamResponse) -> None:
        if self.guard is not None:
            for key, value in security_headers(self.guard).items():
                response.headers.setdefault(key, value)

    # -- pages ---------------------------------------------------------------------------

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=self._static["index.html"], content_type="text/html",
                            charset="utf-8")

    async def _static_file(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in STATIC_FILES:
            raise web.HTTPNotFound()
        kind = STATIC_FILES[name]
        return web.Response(body=self._static[name], content_type=kind,
                            charset="utf-8" if kind.startswith("text/") else None)

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        """One page's live updates: `?epoch=E&last=N` resumes after event N."""
        feed = self.feed
        assert feed is not None
        ws = web.WebSocketResponse(heartbeat=WS_HEARTBEAT_S, max_msg_size=api.JSON_MAX_BYTES)
        await ws.prepare(request)
        try:
            last = int(request.query.get("last", "-1"))
        except ValueError:
            last = -1
        if not feed.can_resume(request.query.get("epoch", ""), last):
            self.count("resets")
            await ws.send_str('{"type":"reset","reason":"state changed; reload"}')
            await ws.close()
            return ws
        reader = Reader(last)
        feed.add(reader)
        writer = asyncio.create_task(self._write(ws, reader))
        try:
            async for msg in ws:  # the page sends nothing but pings; read to see it close
                if msg.type is WSMsgType.ERROR:
                    break
        finally:
            feed.remove(reader)
            writer.cancel()
        return ws

    async def _write(self, ws: web.WebSocketResponse, reader: Reader) -> None:
        assert self.feed is not None
        try:
            async for frame in reader.frames(self.feed):
                await ws.send_str(frame)
            await ws.close()
        except (ConnectionError, RuntimeError) as exc:
            log.debug("page socket: %s", exc)


def _refuse(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text + "\n")
