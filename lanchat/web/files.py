"""The page's file requests: upload (a copy in the home, offered to a peer), accept or
decline of offers, and download of received, verified files.

Handlers run on the node's loop and hand disk and node calls to a worker thread
(api._off_loop).
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
import time
from pathlib import Path
from typing import Any, BinaryIO

from aiohttp import web

from lanchat.events import Event
from lanchat.transfer import TransferError, manager_of
from lanchat.transfer.names import safe_component
from lanchat.web.api import _error, _off_loop, _server
from lanchat.web.security import content_disposition

UPLOADS_DIR = "web-uploads"
UPLOAD_CHUNK = 1 << 20
DOWNLOAD_CHUNK = 1 << 20
UPLOAD_SPARE_BYTES = 64 << 20  # left free on the home's disk after an upload
KEEP_UPLOADS_S = 7 * 24 * 3600.0  # an upload's copy outlives an unfinished transfer this long


def add_routes(app: web.Application) -> None:
    """The file routes under /api/."""
    r = app.router
    r.add_put("/api/upload", upload)
    r.add_post("/api/transfers/{tid}/{answer}", answer)
    r.add_get("/api/download/{tid}", download)



class Uploads:
    """Files dropped in the page: copied into the home, offered, deleted once finished."""

    def __init__(self) -> None:
        self.root: Path | None = None
        self._by_transfer: dict[str, Path] = {}

    def open(self, home: Path) -> None:
        """Make the folder; remove copies left by earlier runs long ago."""
        self.root = home / UPLOADS_DIR
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        cutoff = time.time() - KEEP_UPLOADS_S
        for entry in self.root.iterdir():
            try:
                if entry.is_dir() and entry.stat().st_mtime < cutoff:
                    shutil.rmtree(entry, ignore_errors=True)
            except OSError:
                continue

    def new_path(self, name: str) -> Path:
        """A fresh private folder holding one file called (a safe form of) `name`."""
        assert self.root is not None
        folder = self.root / secrets.token_hex(8)
        folder.mkdir(mode=0o700)
        return folder / safe_component(name)

    def offered(self, transfer: str, path: Path) -> None:
        """Remember which copy a transfer reads."""
        self._by_transfer[transfer] = path.parent

    def finished(self, event: Event) -> None:
        """A transfer ended: drop its copy unless it may still resume."""
        if event.fields.get("direction") != "out" or event.fields.get("resumable"):
            return
        folder = self._by_transfer.pop(str(event.fields.get("transfer")), None)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


NO_ROOM = "not enough free space in lanchat's home for this file"


class NoRoom(Exception):
    """The upload grew past the space it may take."""


async def _receive(body: Any, path: Path, room: int) -> None:
    """Write the request body to `path`; NoRoom once it passes `room` bytes or the disk's
    free space falls under the spare (other writers, other uploads)."""
    written = 0
    with await _off_loop(open, path, "wb") as out:
        async for chunk in body.iter_chunked(UPLOAD_CHUNK):
            written += len(chunk)
            if written > room:
                raise NoRoom()
            await _off_loop(out.write, chunk)
            if (await _off_loop(shutil.disk_usage, path.parent)).free < UPLOAD_SPARE_BYTES:
                raise NoRoom()


async def upload(request: web.Request) -> web.StreamResponse:
    """`PUT /api/upload?to=PEER&name=NAME` with the file as the body: offer it to PEER."""
    server = _server(request)
    node = server.node
    manager = manager_of(node)
    if manager is None:
        raise _error(409, "file transfer is not enabled in this node")
    to, name = request.query.get("to", ""), request.query.get("name", "")
    if not to or not name:
        raise _error(400, "upload needs ?to=PEER&name=NAME")
    try:
        peer = await _off_loop(node.resolve, to)
    except LookupError as exc:
        raise _error(404, str(exc).strip("'\"")) from None
    path = await _off_loop(server.uploads.new_path, name)
    free = (await _off_loop(shutil.disk_usage, path.parent)).free
    room = free - UPLOAD_SPARE_BYTES  # what this upload may take; a chunked body too
    size = request.content_length
    if size is not None and size > room:
        shutil.rmtree(path.parent, ignore_errors=True)
        raise _error(507, NO_ROOM)
    try:
        await _receive(request.content, path, room)
    except (OSError, ConnectionError, NoRoom) as exc:
        shutil.rmtree(path.parent, ignore_errors=True)
        if isinstance(exc, NoRoom):
            raise _error(507, NO_ROOM) from None
        raise _error(507 if isinstance(exc, OSError) else 400, f"upload failed: {exc}") from None
    try:
        t = await _off_loop(manager.offer, peer["id"], path)
    except TransferError as exc:
        shutil.rmtree(path.parent, ignore_errors=True)
        raise _error(409, str(exc)) from None
    server.uploads.offered(t.id, path)
    server.feed.publish("file_sent", {"transfer": t.id, "to": peer["id"], "name": t.name,
                                      "size": t.size}, time.time())
    return web.json_response({"transfer": t.id, "name": t.name, "size": t.size,
                              "to": peer["id"]})


async def answer(request: web.Request) -> web.StreamResponse:
    """Accept (into the downloads folder) or decline an incoming offer."""
    node = _server(request).node
    manager = manager_of(node)
    if manager is None:
        raise _error(409, "file transfer is not enabled in this node")
    tid, verb = request.match_info["tid"], request.match_info["answer"]
    if verb not in ("accept", "decline"):
        raise _error(404, f"no action {verb!r}")
    try:
        if verb == "accept":
            t = await _off_loop(manager.accept, tid)
        else:
            t = await _off_loop(manager.decline, tid)
    except TransferError as exc:
        raise _error(409, str(exc)) from None
    return web.json_response({"transfer": t.id, "state": t.state.value})


def finished_file(node: Any, tid: str) -> Path | None:
    """The verified file of a finished incoming transfer, if it is a regular file inside
    the downloads folder; None otherwise."""
    manager = manager_of(node)
    if manager is None:
        return None
    row = next((r for r in manager.transfers() if r["transfer"] == tid), None)
    if (row is None or row["direction"] != "in" or row["state"] != "done"
            or not (row.get("digest") or row.get("sha256")) or not row["path"]):
        return None
    root = os.path.realpath(node.config.downloads_dir)
    real = os.path.realpath(row["path"])
    if os.path.commonpath([root, real]) != root or not os.path.isfile(real):
        return None
    return Path(real)


def open_inside(path: Path, root: str) -> BinaryIO | None:
    """Open the file `finished_file` checked, unless something was swapped in since: a
    link in its place is not followed, and what was opened must be a regular file still
    inside `root` (a folder on the way replaced by a link moves it out)."""
    try:  # O_NONBLOCK: a FIFO swapped in must not hang the open
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    opened = os.fdopen(fd, "rb")
    try:
        info = os.fstat(fd)
        proc = f"/proc/self/fd/{fd}"
        where = os.path.realpath(proc) if os.path.exists(proc) else os.path.realpath(path)
        if (stat.S_ISREG(info.st_mode) and os.path.commonpath([root, where]) == root
                and os.path.samestat(info, os.stat(where))):
            return opened
    except OSError:
        pass
    opened.close()
    return None


def open_download(node: Any, tid: str) -> tuple[str, BinaryIO] | None:
    """The name and the checked, opened file of a finished transfer, or None."""
    path = finished_file(node, tid)
    opened = None if path is None else open_inside(
        path, os.path.realpath(node.config.downloads_dir))
    return None if path is None or opened is None else (path.name, opened)


async def download(request: web.Request) -> web.StreamResponse:
    """A received, verified file, as an attachment under its own (safe) name; served from
    the file opened after the check, so a link swapped in later is never followed."""
    node = _server(request).node
    found = await _off_loop(open_download, node, request.match_info["tid"])
    if found is None:
        raise _error(404, "no finished, verified file with that id in the downloads folder")
    name, opened = found
    with opened:
        left = os.fstat(opened.fileno()).st_size
        response = web.StreamResponse(headers={
            "Content-Disposition": content_disposition(name),
            "Content-Type": "application/octet-stream"})
        response.content_length = left
        await response.prepare(request)
        while left > 0:
            chunk = await _off_loop(opened.read, min(DOWNLOAD_CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            await response.write(chunk)
    await response.write_eof()
    return response
