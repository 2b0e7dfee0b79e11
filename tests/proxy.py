"""A fault-injecting TCP proxy for tests: drops, half-opens, delays and trickles a stream."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Fault:
    """What to do to one proxied connection (both directions)."""

    drop_after: int | None = None  # close both sides after this many bytes
    black_hole_after: int | None = None  # stop forwarding, keep sockets open (half-open)
    delay_s: float = 0.0  # added before forwarding each chunk
    trickle: int = 0  # forward the first N bytes one at a time


class FaultProxy:
    """Listen on 127.0.0.1; connection k gets `plan(k)`; bounded in time by its owner."""

    def __init__(self, upstream: tuple[str, int], plan: Callable[[int], Fault]) -> None:
        self.upstream = upstream
        self.plan = plan
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self._socks: list[socket.socket] = []
        self._closed = False
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                fault = self.plan(self.connections)
                self.connections += 1
                self._socks += [client, server]
            budget = _Budget(fault)
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(src, dst, budget),
                                 daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, budget: _Budget) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                for piece in budget.pieces(data):
                    if piece is None:
                        return  # black hole: swallow everything from now on
                    if budget.fault.delay_s:
                        time.sleep(budget.fault.delay_s)
                    dst.sendall(piece)
                if budget.dropped:
                    break
        except OSError:
            pass
        finally:
            if not budget.holed:
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

    def close(self) -> None:
        """Stop listening and close every proxied socket."""
        self._closed = True
        self.listener.close()
        with self._lock:
            for s in self._socks:
                s.close()


class _Budget:
    """Bytes forwarded so far on one connection, shared by both directions."""

    def __init__(self, fault: Fault) -> None:
        self.fault = fault
        self.sent = 0
        self.dropped = False
        self.holed = False
        self._lock = threading.Lock()

    def pieces(self, data: bytes) -> list[bytes | None]:
        out: list[bytes | None] = []
        with self._lock:
            view = memoryview(data)
            while view and not self.dropped and not self.holed:
                limit = len(view)
                if self.fault.trickle and self.sent < self.fault.trickle:
                    limit = 1
                for cap, kind in ((self.fault.drop_after, "drop"),
                                  (self.fault.black_hole_after, "hole")):
                    if cap is not None and self.sent + limit >= cap:
                        limit = max(0, cap - self.sent)
                        if kind == "drop":
                            self.dropped = True
                        else:
                            self.holed = True
                if limit:
                    out.append(bytes(view[:limit]))
                    self.sent += limit
                    view = view[limit:]
            if self.holed:
                out.append(None)
        return out


def random_plan(seed: int) -> Callable[[int], Fault]:
    """Connection k: a random fault for the first few, then a clean line."""
    rng = random.Random(seed)

    def plan(k: int) -> Fault:
        if k >= 6:
            return Fault()
        kind = rng.choice(["drop", "hole", "delay", "trickle"])
        at = rng.randint(2_000, 60_000)
        if kind == "drop":
            return Fault(drop_after=at)
        if kind == "hole":
            return Fault(black_hole_after=at)
        if kind == "delay":
            return Fault(delay_s=0.005, drop_after=at * 2)
        return Fault(trickle=3_000, drop_after=at)
    return plan
