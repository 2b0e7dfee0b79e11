"""Our LocalSend HTTPS server (stdlib http.server, one thread per connection, bounded).

Routes `/api/localsend/v2/{register,prepare-upload,upload,cancel,info}` to a `Receiver` (the
LocalSend kind). The TLS handshake runs in the connection's thread, so a slow client never
holds up the others; at most MAX_CONNECTIONS are served at once, more are closed and counted.
"""

from __future__ import annotations

import logging
import ssl
import threading
import urllib.parse
from collections import Counter
from http.server import BaseHTTPRequestHandler, HTTPServer
from socketserver import ThreadingMixIn
from typing import Any, BinaryIO, Protocol, cast

from lanchat.interop.localsend.client import plain_address
from lanchat.interop.localsend.messages import (
    API,
    MAX_BODY_BYTES,
    DeviceInfo,
    MessageError,
    PrepareUpload,
    dump,
    load,
)

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 32
SOCKET_TIMEOUT_S = 30.0  # one read or write on a connection
HANDSHAKE_TIMEOUT_S = 5.0
DRAIN_MAX_BYTES = 1 << 20  # a refused upload this small is read to its end before the answer


class Receiver(Protocol):
    """What the server asks (its methods run on connection threads)."""

    def device(self) -> DeviceInfo:
        """Our own device info."""
        ...

    def on_register(self, info: DeviceInfo, address: str) -> None:
        """A peer introduced itself."""
        ...

    def on_prepare(self, request: PrepareUpload, address: str,
                   pin: str | None) -> tuple[int, dict[str, Any] | None]:
        """A peer offers files: block until decided; return status and JSON answer."""
        ...

    def on_upload(self, session_id: str, file_id: str, token: str, address: str,
                  body: BinaryIO, length: int) -> tuple[int, str]:
        """A file's bytes: return status and a short message."""
        ...

    def on_cancel(self, session_id: str, address: str) -> None:
        """The sender stopped the session."""
        ...


class _Counted:
    """A request body that counts what was read of it."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.read_bytes = 0

    def read(self, n: int = -1) -> bytes:
        data: bytes = self.raw.read(n)
        self.read_bytes += len(data)
        return data


class _Handler(BaseHTTPRequestHandler):
    server: LocalSendServer
    protocol_version = "HTTP/1.0"
    timeout = SOCKET_TIMEOUT_S
    server_version = "lanchat"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        log.debug("localsend http %s: " + format, self.client_address[0], *args)

    def _answer(self, status: int, body: dict[str, Any] | None = None,
                message: str = "") -> None:
        data = dump(body) if body is not None else (
            dump({"message": message}) if message else b"")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        if data:
            self.wfile.write(data)

    def _route(self) -> tuple[str, dict[str, str]]:
        url = urllib.parse.urlsplit(self.path)
        query = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        path = url.path
        return (path[len(API):] if path.startswith(API + "/") else ""), query

    def _length(self) -> int | None:
        value = self.headers.get("Content-Length")
        try:
            length = int(value) if value is not None else -1
        except ValueError:
            length = -1
        if length < 0:
            self.server.count("no_length")
            self._answer(411, message="Content-Length required")
            return None
        return length

    def _json(self) -> object | None:
        length = self._length()
        if length is None:
            return None
        if length > MAX_BODY_BYTES:
            self.server.count("body_too_large")
            self._answer(413, message="body too large")
            return None
        try:
            return load(self.rfile.read(length)) if length else {}
        except MessageError as exc:
            self.server.count("bad_request")
            self._answer(400, message=str(exc))
            return None

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        route, _ = self._route()
        if route == "/info":
            self._answer(200, self.server.receiver.device().to_json())
        else:
            self._answer(404, message="not found")

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        route, query = self._route()
        address = plain_address(self.client_address[0])
        receiver = self.server.receiver
        try:
            if route == "/register":
                body = self._json()
                if body is None:
                    return
                receiver.on_register(DeviceInfo.from_json(body), address)
                self._answer(200, receiver.device().to_json())
            elif route == "/prepare-upload":
                body = self._json()
                if body is None:
                    return
                status, answer = receiver.on_prepare(PrepareUpload.from_json(body), address,
                                                     query.get("pin"))
                self._answer(status, answer)
            elif route == "/upload":
                missing = [k for k in ("sessionId", "fileId", "token") if not query.get(k)]
                if missing:
                    self._answer(400, message=f"missing {', '.join(missing)}")
                    return
                length = self._length()
                if length is None:
                    return
                body = _Counted(self.rfile)
                status, message = receiver.on_upload(
                    query["sessionId"], query["fileId"], query["token"], address,
                    cast(BinaryIO, body), length)
                left = length - body.read_bytes
                if status != 200 and 0 < left <= DRAIN_MAX_BYTES:
                    # A refused body still on its way: read it, so the sender gets our
                    # answer instead of a reset. A larger one is cut off with the close.
                    while left > 0 and (chunk := self.rfile.read(min(left, 65536))):
                        left -= len(chunk)
                self._answer(status, message=message)
            elif route == "/cancel":
                receiver.on_cancel(query.get("sessionId", ""), address)
                self._answer(200)
            else:
                self._answer(404, message="not found")
        except MessageError as exc:
            self.server.count("bad_request")
            self._answer(400, message=str(exc))


class LocalSendServer(ThreadingMixIn, HTTPServer):
    """HTTPS (or plain HTTP, when `ctx` is None) for LocalSend peers on one address."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], receiver: Receiver,
                 ctx: ssl.SSLContext | None) -> None:
        self.receiver = receiver
        self.ctx = ctx
        self.counters: Counter[str] = Counter()
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._count_lock = threading.Lock()
        super().__init__(address, _Handler)

    def count(self, key: str) -> None:
        """Add to a counter (any thread)."""
        with self._count_lock:
            self.counters[key] += 1

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.count("connections_shed")
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            if self.ctx is not None:
                request.settimeout(HANDSHAKE_TIMEOUT_S)
                try:
                    request = self.ctx.wrap_socket(request, server_side=True)
                except (OSError, ssl.SSLError) as exc:
                    self.count("tls_failed")
                    log.info("localsend: TLS with %s failed: %s", client_address[0], exc)
                    request.close()
                    return
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def serve_in_thread(self) -> threading.Thread:
        """Serve until `shutdown()`, on a daemon thread."""
        thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2},
                                  name="lanchat-localsend-http", daemon=True)
        thread.start()
        return thread

    @property
    def port(self) -> int:
        """The bound port."""
        return int(self.socket.getsockname()[1])


def open_server(ip: str, ports: tuple[int, ...], receiver: Receiver,
                ctx: ssl.SSLContext | None) -> LocalSendServer:
    """The first of `ports` that is free on `ip` (0: any)."""
    error: OSError | None = None
    for port in ports:
        try:
            return LocalSendServer((ip, port), receiver, ctx)
        except OSError as exc:
            error = exc
    assert error is not None
    raise error

