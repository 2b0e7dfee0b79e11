"""The sender's data listener: an accept thread, and one thread per connection.

A connection must finish TLS, prove its key and name a transfer within HANDSHAKE_TIMEOUT_S
of being accepted (a watchdog in the accept loop shuts down the ones that do not), and at
most MAX_HANDSHAKES connections may be that far at once; streams that got that far are
capped separately (MAX_STREAMS), so strangers cannot take the slots of real transfers.
"""

from __future__ import annotations

import logging
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable

from lanchat.identity import Identity, auth_payload, new_nonce, verify_proof
from lanchat.protocol import (
    HANDSHAKE_TIMEOUT_S,
    Auth,
    FileCancel,
    FileRequest,
    Hello,
    ProtocolError,
)
from lanchat.tls import server_context
from lanchat.transfer.channel import TlsChannel
from lanchat.transfer.sender import FileStreamer, SendJob, SendOwner
from lanchat.transfer.wire import (
    STALL_S,
    DataError,
    classify,
    expect,
    write_frame,
)

log = logging.getLogger("lanchat.transfer.sender")

ACCEPT_JOIN_S = 2.0
MAX_STREAMS = 64  # connections that named a transfer, streaming at once
MAX_HANDSHAKES = 64  # connections not yet that far; more are shed
WATCHDOG_S = 0.25


class DataServer:
    """The sender's data listener: an accept thread and one thread per connection."""

    streamer: type[FileStreamer] = FileStreamer

    def __init__(self, identity: Identity, nick: Callable[[], str], hosts: list[str],
                 owner: SendOwner, *, stall_s: float = STALL_S,
                 handshake_s: float = HANDSHAKE_TIMEOUT_S) -> None:
        self.identity = identity
        self.nick = nick
        self.hosts = hosts or ["0.0.0.0"]
        self.owner = owner
        self.stall_s = stall_s
        self.handshake_s = handshake_s
        self.port = 0
        self.counters: dict[str, int] = {}
        self._ctx = server_context(identity)
        self._socks: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._streams = 0  # connection threads alive
        self._pending: dict[socket.socket, float] = {}  # not yet claimed -> deadline
        self._conns: dict[socket.socket, threading.Thread] = {}
        self._wake_r, self._wake_w = os.pipe()  # stop() wakes the accept loop at once

    def start(self) -> int:
        """Bind every host on one ephemeral port and start accepting; return the port."""
        for host in self.hosts:
            sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, self.port))
            except OSError as exc:
                sock.close()
                log.warning("file data listener: cannot bind %s:%d: %s", host, self.port, exc)
                continue
            sock.listen(16)
            self.port = sock.getsockname()[1]
            self._socks.append(sock)
        if not self._socks:
            raise OSError("no address to listen on for file data")
        self._thread = threading.Thread(target=self._accept_loop, name="lanchat-files-accept",
                                        daemon=True)
        self._thread.start()
        return self.port

    def stop(self) -> None:
        """Stop accepting, shut every connection down and wait (briefly) for its thread."""
        self._stop.set()
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass
        deadline = time.monotonic() + ACCEPT_JOIN_S
        if self._thread is not None:
            self._thread.join(ACCEPT_JOIN_S)
        for sock in self._socks:
            sock.close()
        with self._lock:
            conns = dict(self._conns)
        for conn in conns:
            _shutdown(conn)
        for thread in conns.values():
            thread.join(max(0.0, deadline - time.monotonic()))
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def _count(self, key: str) -> None:
        with self._lock:
            self.counters[key] = self.counters.get(key, 0) + 1

    def _accept_loop(self) -> None:
        # selectors (epoll on Linux), not select(): select() fails on descriptors past 1024,
        # which a busy process reaches, and the loop would end without a word.
        with selectors.DefaultSelector() as selector:
            try:
                for sock in self._socks:
                    selector.register(sock, selectors.EVENT_READ, sock)
                selector.register(self._wake_r, selectors.EVENT_READ, None)
            except (OSError, ValueError) as exc:
                log.error("file server: cannot watch its sockets: %s; no more transfers "
                          "are accepted", exc)
                self._count("accept_loop_failed")
                return
            while not self._stop.is_set():
                try:
                    ready = selector.select(WATCHDOG_S)
                except (OSError, ValueError) as exc:
                    log.error("file server: accept loop stopped: %s", exc)
                    self._count("accept_loop_failed")
                    return
                if any(key.data is None for key, _ in ready):
                    return
                self._expire(time.monotonic())
                for key, _ in ready:
                    try:
                        conn, addr = key.data.accept()
                    except OSError:
                        continue
                    self._admit(conn, addr[0])

    def _admit(self, conn: socket.socket, address: str) -> None:
        thread = threading.Thread(target=self._serve, args=(conn, address), daemon=True,
                                  name="lanchat-files-send")
        with self._lock:
            busy = len(self._pending) >= MAX_HANDSHAKES
            if not busy:
                self._streams += 1
                self._pending[conn] = time.monotonic() + self.handshake_s
                self._conns[conn] = thread
        if busy:
            self._count("data_shed")
            conn.close()
            return
        thread.start()

    def _expire(self, now: float) -> None:
        """Shut down connections that did not name a transfer in time."""
        with self._lock:
            late = [c for c, when in self._pending.items() if when <= now]
            for conn in late:
                del self._pending[conn]
                _shutdown(conn)
        for _ in late:
            self._count("data_handshake_timeouts")

    def _claim_slot(self, conn: socket.socket) -> str:
        """The connection named its transfer: lift its deadline; '' or why it must go."""
        with self._lock:
            if self._pending.pop(conn, None) is None:
                return "late"
            return "busy" if self._streams - len(self._pending) > MAX_STREAMS else ""

    def _serve(self, conn: socket.socket, address: str) -> None:
        job: SendJob | None = None
        try:
            conn.settimeout(self.stall_s)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with TlsChannel(conn, self._ctx, server_side=True) as tls:
                tls.handshake()
                peer = self._authenticate(tls)
                request = expect(tls, FileRequest)
                refused = self._claim_slot(conn)
                if refused == "late":
                    raise DataError("handshake took too long", resumable=True)
                if refused:  # too many streams: closed, so the receiver tries again later
                    self._count("data_shed")
                    return
                claim = self.owner.claim(request.transfer, peer)
                if isinstance(claim, str):
                    self._count("data_refused")
                    log.info("file data from %s for %s refused: %s", address,
                             request.transfer, claim)
                    write_frame(tls, FileCancel(request.transfer, claim))
                    return
                job = claim
                self.streamer(tls, job, self.owner).run(request)
        except Exception as exc:  # noqa: BLE001 - every failure is reported, none escapes
            error = classify(exc)
            if job is None:
                self._count("data_refused")
                log.info("file data connection from %s dropped: %s", address, error.reason)
            else:
                self.owner.send_failed(job, error)
        finally:
            conn.close()
            with self._lock:
                self._streams -= 1
                self._pending.pop(conn, None)
                self._conns.pop(conn, None)

    def _authenticate(self, tls: TlsChannel) -> str:
        nonce = new_nonce()
        write_frame(tls, Hello(self.identity.node_id, self.nick(), nonce))
        auth = expect(tls, Auth)
        payload = auth_payload(nonce, self.identity.node_id, auth.node_id)
        try:
            proven = verify_proof(auth.key, auth.sig, payload)
        except ValueError as exc:
            raise ProtocolError(f"key proof refused: {exc}") from None
        if proven != auth.node_id:
            raise ProtocolError("key proof is for another id")
        return proven


def _shutdown(conn: socket.socket) -> None:
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
