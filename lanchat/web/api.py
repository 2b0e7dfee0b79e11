"""The page's requests: state, history pages, search, sending, safety codes (files are
in files.py).

Every handler runs on the node's loop and hands node calls (SQLite, locks, plugin code)
to a worker thread, so a slow disk or plugin never stalls the sessions on that loop.
Conversations are named `all` (messages to everyone), `peer:<node id>` (direct) and
`room:<#name>` (a room).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from lanchat.transfer import manager_of

log = logging.getLogger(__name__)
T = TypeVar("T")
SERVER_KEY: web.AppKey[Any] = web.AppKey("server", object)

JSON_MAX_BYTES = 256 * 1024
HISTORY_PAGE = 100
HISTORY_MAX = 500
SEARCH_MAX = 100


def add_routes(app: web.Application) -> None:
    """The API under /api/."""
    r = app.router
    r.add_get("/api/state", state)
    r.add_get("/api/history", history)
    r.add_get("/api/search", search)
    r.add_post("/api/send", send)
    r.add_post("/api/command", command)
    r.add_get("/api/peers/{pid}/safety", safety)
    r.add_post("/api/peers/{pid}/verify", verify)


def rooms_of(node: Any) -> Any:
    """The node's rooms extension (lanchat.rooms), if that capability is there."""
    try:
        module = importlib.import_module("lanchat.rooms")
    except ImportError:
        return None
    return module.rooms_of(node)


def room_rows(rooms: Any, name: str, limit: int) -> list[dict[str, Any]]:
    """A room's latest messages in the shape of `Node.history` rows (no paging back yet:
    rooms keep their own log)."""
    return [{"id": r["id"], "peer": r["from"]["id"], "nick": r["from"]["nick"],
             "direction": r.get("direction", "in"), "to": "room", "room": r.get("room", name),
             "room_id": r.get("room_id", name), "text": r["text"], "ts": r.get("sent", 0.0),
             "seq": 0}
            for r in rooms.history(name, limit)]


def _server(request: web.Request) -> Any:
    return request.app[SERVER_KEY]


async def _off_loop(fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


def _error(status: int, text: str) -> web.HTTPException:
    cls = {400: web.HTTPBadRequest, 404: web.HTTPNotFound, 409: web.HTTPConflict,
           413: web.HTTPRequestEntityTooLarge, 507: web.HTTPInsufficientStorage}[status]
    if cls is web.HTTPRequestEntityTooLarge:
        return web.HTTPRequestEntityTooLarge(max_size=0, actual_size=0, text=text)
    return cls(text=text)


def _int(value: str | None, default: int, low: int, high: int) -> int:
    try:
        return max(low, min(high, int(value))) if value is not None else default
    except ValueError:
        raise _error(400, f"not a number: {value!r}") from None


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise _error(400, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise _error(400, "the body is not a JSON object")
    return body


# -- state, history, search -------------------------------------------------------------


async def state(request: web.Request) -> web.StreamResponse:
    """Everything the page shows at load: who I am, peers, transfers, rooms, the feed
    position (read first, so a replay from it covers anything the snapshot missed)."""
    server = _server(request)
    node = server.node
    seq = server.feed.seq

    def collect() -> dict[str, Any]:
        manager = manager_of(node)
        rooms = rooms_of(node)
        return {"epoch": server.feed.epoch, "seq": seq, "me": node.info(),
                "peers": node.peers(),
                "transfers": manager.transfers() if manager is not None else [],
                "rooms": [r for r in rooms.listing() if r.get("joined")] if rooms else []}

    return web.json_response(await _off_loop(collect))


def parse_conv(conv: str) -> tuple[str, str]:
    """('all', ''), ('peer', id) or ('room', ROOM_ID); ValueError otherwise."""
    if conv == "all":
        return "all", ""
    kind, _, name = conv.partition(":")
    if kind in ("peer", "room") and name:
        return kind, name
    raise ValueError(f"no conversation {conv!r}")


async def history(request: web.Request) -> web.StreamResponse:
    """One page of a conversation, oldest first: `?conv=C&before=SEQ&limit=N`."""
    node = _server(request).node
    try:
        kind, name = parse_conv(request.query.get("conv", "all"))
    except ValueError as exc:
        raise _error(400, str(exc)) from None
    limit = _int(request.query.get("limit"), HISTORY_PAGE, 1, HISTORY_MAX)
    before = request.query.get("before")
    cursor = _int(before, 0, 0, 2**62) if before else None

    def rows() -> list[dict[str, Any]]:
        if kind == "all":
            return list(node.history(None, limit, before=cursor, broadcast=True))
        if kind == "peer":
            try:
                return list(node.history(name, limit, before=cursor, broadcast=False))
            except LookupError:
                return []
        rooms = rooms_of(node)
        if rooms is None or cursor is not None:
            return []
        return room_rows(rooms, name, limit)

    return web.json_response({"conv": request.query.get("conv", "all"),
                              "messages": await _off_loop(rows)})


async def search(request: web.Request) -> web.StreamResponse:
    """Stored messages matching every word of `?q=`."""
    node = _server(request).node
    query = request.query.get("q", "").strip()
    if not query:
        return web.json_response({"messages": []})
    return web.json_response({"messages": await _off_loop(node.search, query, SEARCH_MAX)})


# -- sending ------------------------------------------------------------------------------


async def send(request: web.Request) -> web.StreamResponse:
    """`{"conv": C, "text": T}`: queue a message, after the plugins' outgoing hook."""
    server = _server(request)
    node = server.node
    body = await _json_body(request)
    text, conv = body.get("text"), body.get("conv")
    if not isinstance(text, str) or not isinstance(conv, str):
        raise _error(400, "send needs conv and text")
    try:
        kind, name = parse_conv(conv)
    except ValueError as exc:
        raise _error(400, str(exc)) from None

    def queue() -> dict[str, Any]:
        to = "all" if kind == "all" else name
        final = text
        if server.plugins is not None:
            filtered = server.plugins.filter_outgoing(node, to, text)
            if filtered is None:
                return {"vetoed": True}
            final = filtered
        if kind == "all":
            msg_id, peers = node.broadcast(final)
            if not peers:
                raise ValueError("nobody is known yet; wait for peers to appear")
        elif kind == "peer":
            held = server.command_context().confirm_unencrypted(name)
            if held is not None:  # the page shows why and keeps the line to send again
                return {"sent": False, "confirm": held.data["confirm"], "text": held.text}
            msg_id = node.send(name, final)
        else:
            rooms = rooms_of(node)
            if rooms is None:
                raise ValueError("rooms are not available in this lanchat")
            try:
                msg_id = rooms.post(name, final, exact=True)["id"]  # name: the room's id
            except (LookupError, ValueError):
                raise
            except Exception as exc:  # noqa: BLE001 - the rooms' own error: say it
                raise ValueError(str(exc)) from None
        return {"id": msg_id, "text": final}

    try:
        result = await _off_loop(queue)
    except (LookupError, ValueError) as exc:
        raise _error(400, str(exc).strip("'\"")) from None
    return web.json_response(result)  # the line comes back as the node's `sent` event


REFUSED_COMMANDS = frozenset({"quit"})  # the node ends from its terminal, not a page


async def command(request: web.Request) -> web.StreamResponse:
    """`{"line": "/join #ops"}`: a slash command, as the shell would run it; its answer."""
    server = _server(request)
    body = await _json_body(request)
    line = body.get("line")
    if not isinstance(line, str) or not line.startswith("/") or "\n" in line:
        raise _error(400, "a command is one line starting with /")
    if line[1:].split(" ", 1)[0].lower() in REFUSED_COMMANDS:
        raise _error(400, "quit lanchat from the terminal it runs in")

    def run() -> dict[str, Any]:
        from lanchat.commands import execute

        out = execute(server.command_context(), line)
        return {"text": out.text if out else "", "data": out.data if out else None}

    try:
        answer_ = await _off_loop(run)
    except Exception as exc:  # noqa: BLE001 - CommandError, or a plugin's bug: say it
        raise _error(400, str(exc) or type(exc).__name__) from None
    return web.json_response(answer_, dumps=lambda o: json.dumps(o, default=str))


# -- trust --------------------------------------------------------------------------------


async def safety(request: web.Request) -> web.StreamResponse:
    """The code both sides read aloud, and the peer's trust."""
    node = _server(request).node
    try:
        peer, code = await _off_loop(node.safety_code, request.match_info["pid"])
    except LookupError as exc:
        raise _error(404, str(exc).strip("'\"")) from None
    return web.json_response({"peer": peer["id"], "code": code, "trust": peer["trust"]})


async def verify(request: web.Request) -> web.StreamResponse:
    """Mark a peer verified (the user compared the codes)."""
    node = _server(request).node
    try:
        peer = await _off_loop(node.set_trust, request.match_info["pid"], "verified")
    except (LookupError, ValueError) as exc:
        raise _error(404, str(exc).strip("'\"")) from None
    server = _server(request)
    server.feed.publish("peer_updated", {"peer": peer}, time.time())
    return web.json_response({"peer": peer})
